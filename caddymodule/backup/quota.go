package backup

import (
	"time"

	"github.com/hubgate/hubgate/policies"
)

// Quota is a home's size against its team's storage quota.
type Quota struct {
	// Measured says the home has been measured (the fields below mean
	// something).
	Measured bool
	Bytes    int64
	At       time.Time
	Soft     int64
	Hard     int64
	OverSoft bool
	OverHard bool
	// Largest are the largest folders, for the page that explains a
	// refused start.
	Largest []Folder
}

// Check compares a measured usage (nil: not measured) with a quota.
func Check(u *Usage, s policies.Storage) Quota {
	q := Quota{Soft: s.Soft, Hard: s.Hard}
	if u == nil {
		return q
	}
	q.Measured, q.Bytes, q.At, q.Largest = true, u.Bytes, u.Measured, u.Largest
	q.OverSoft = s.Soft > 0 && u.Bytes > s.Soft
	q.OverHard = s.Hard > 0 && u.Bytes > s.Hard
	return q
}

// Quota is user's home against quota s, from the cache (no engine call).
func (m *Manager) Quota(user string, s policies.Storage) Quota {
	u, _ := m.User(user)
	return Check(u.Usage, s)
}
