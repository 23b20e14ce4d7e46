package pages

import (
	"fmt"
	"time"
)

// ServerInfo is one server as the admin page and the API show it.
type ServerInfo struct {
	User         string    `json:"user"`
	Server       string    `json:"server"`
	Image        string    `json:"image"`
	Status       string    `json:"status"`
	Node         string    `json:"node,omitempty"`
	Running      bool      `json:"running"`
	Created      time.Time `json:"created"`
	LastActivity time.Time `json:"last_activity,omitzero"`
	MemoryLimit  int64     `json:"memory_limit_bytes"`
	CPULimit     float64   `json:"cpu_limit"`
}

// MemoryText renders the memory limit for people.
func (s ServerInfo) MemoryText() string { return BytesText(s.MemoryLimit) }

// BytesText renders a byte count for people ("4 GiB", "512 MiB"), or
// "unlimited" for zero.
func BytesText(n int64) string {
	if n <= 0 {
		return "unlimited"
	}
	const gi, mi = 1 << 30, 1 << 20
	if n%gi == 0 {
		return fmt.Sprintf("%d GiB", n/gi)
	}
	return fmt.Sprintf("%d MiB", n/mi)
}

// UserInfo is one user as the admin page and the API show it.
type UserInfo struct {
	Name     string    `json:"name"`
	Admin    bool      `json:"admin"`
	InPolicy bool      `json:"in_policy"`
	Teams    []string  `json:"teams"`
	Images   []string  `json:"images"`
	Servers  []string  `json:"servers"`
	LastSeen time.Time `json:"last_seen,omitzero"`
}
