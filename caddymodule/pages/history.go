package pages

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// HistoryPage is a user's access history: the audit records that concern
// them, newest first.
type HistoryPage struct {
	Frame
	// Of is whose history this is (an admin may look at anyone's).
	Of string
	// Records are the page's records, newest first.
	Records []HistoryRow
	// Older, if set, is the link to the next page of older records.
	Older string
	// Kept says how far back the history goes, for the note under it.
	Kept string
}

// HistoryRow is one record of the history page.
type HistoryRow struct {
	Time    time.Time
	Level   string
	What    string
	Details []string
}

// TimeText is the record's time in UTC, to the second.
func (r HistoryRow) TimeText() string { return r.Time.UTC().Format("2006-01-02 15:04:05 UTC") }

// HistoryDetails renders a record's fields as "name: value" lines, sorted
// by name; hide names fields the row does not show.
func HistoryDetails(fields map[string]any, hide ...string) []string {
	out := make([]string, 0, len(fields))
	for k, v := range fields {
		if contains(hide, k) {
			continue
		}
		var s string
		switch t := v.(type) {
		case []any:
			parts := make([]string, len(t))
			for i, x := range t {
				parts[i] = fmt.Sprint(x)
			}
			s = strings.Join(parts, ", ")
		default:
			s = fmt.Sprint(t)
		}
		out = append(out, k+": "+s)
	}
	sort.Strings(out)
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// History renders the access-history page.
func (p *Renderer) History(w http.ResponseWriter, d HistoryPage) error {
	return p.render(w, http.StatusOK, "history", d)
}
