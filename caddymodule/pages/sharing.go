package pages

import (
	"strings"
	"time"
)

// GrantView is a share or an admin access grant as the pages and the API
// show it.
type GrantView struct {
	ID     string   `json:"id"`
	Kind   string   `json:"kind"`
	Owner  string   `json:"owner"`
	Server string   `json:"server"`
	Users  []string `json:"users"`
	Teams  []string `json:"teams"`
	By     string   `json:"by"`
	Reason string   `json:"reason,omitempty"`
	// URL opens the server (for the people it is shared with).
	URL     string    `json:"url,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"`
	Active  bool      `json:"active"`
}

// Who lists the users and teams of a grant for people.
func (g GrantView) Who() string {
	var parts []string
	parts = append(parts, g.Users...)
	for _, t := range g.Teams {
		parts = append(parts, "team "+t)
	}
	return strings.Join(parts, ", ")
}

// SharingView is the home page's sharing part (with server_host).
type SharingView struct {
	// Shares says owners may share their servers.
	Shares bool
	// Servers are the user's servers that may be shared.
	Servers []string
	// Mine are the shares of the user's servers; WithMe the servers
	// shared with the user; AdminAccess the admin access grants on the
	// user's servers (who, when, why, until when); Held the access
	// grants an admin holds.
	Mine, WithMe, AdminAccess, Held []GrantView
}

// AdminAccessView is the admin page's part on shares and access grants.
type AdminAccessView struct {
	// Shares says owners may share; Grants are every share and access
	// grant in force.
	Shares bool
	Grants []GrantView
	// DefaultDuration and MaxDuration bound an access grant.
	DefaultDuration, MaxDuration string
}
