package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/history"
	"github.com/hubgate/hubgate/caddymodule/pages"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
)

// HistorySource is the per-user access history (history.Index).
type HistorySource interface {
	Page(user string, before uint64, n int) ([]history.Record, bool)
}

// historyPageSize is how many records a history page shows.
const historyPageSize = 50

// historyFor decides whose history a request may see: the caller's own,
// or, for an admin (or an API token), the one ?user= names; an admin
// looking at someone else's is audited. ok is false when the refusal was
// written.
func (s *Site) historyFor(w http.ResponseWriter, r *http.Request, sess *session.Session, caller string, admin bool) (of string, ok bool, err error) {
	of = caller
	if q := r.URL.Query().Get("user"); q != "" {
		of = policies.NormalizeUser(q)
	}
	if of == "" {
		return "", false, pages.WriteJSON(w, http.StatusBadRequest, map[string]any{"error": "name the user: ?user=NAME"})
	}
	if of != caller {
		if !admin {
			return "", false, s.refuse(w, r, sess, http.StatusForbidden, "You can see only your own access history.", "not_admin")
		}
		s.o.Audit.Info("history viewed", zap.String("user", of), zap.String("by", caller))
	}
	return of, true, nil
}

// historyPage reads one page of of's history.
func (s *Site) historyPage(r *http.Request, of string) ([]history.Record, uint64) {
	before, _ := strconv.ParseUint(r.URL.Query().Get("before"), 10, 64)
	if s.o.History == nil {
		return nil, 0
	}
	recs, more := s.o.History.Page(of, before, historyPageSize)
	if !more || len(recs) == 0 {
		return recs, 0
	}
	return recs, recs[len(recs)-1].ID
}

func olderLink(path, of, caller string, next uint64) string {
	if next == 0 {
		return ""
	}
	q := url.Values{"before": {strconv.FormatUint(next, 10)}}
	if of != caller {
		q.Set("user", of)
	}
	return path + "?" + q.Encode()
}

// serveHistory shows the signed-in user's access history (an admin's
// ?user= shows anyone's).
func (s *Site) serveHistory(w http.ResponseWriter, r *http.Request, sess *session.Session) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return pages.WriteJSON(w, http.StatusMethodNotAllowed, map[string]any{"error": "method not allowed"})
	}
	of, ok, err := s.historyFor(w, r, sess, sess.User, s.o.Policy().IsAdmin(sess.User))
	if !ok {
		return err
	}
	recs, next := s.historyPage(r, of)
	page := pages.HistoryPage{
		Frame: s.o.Login.Frame(sess, "Access history"),
		Of:    of,
		Older: olderLink("/hub/history", of, sess.User, next),
		Kept:  "The gateway keeps the latest records of each user; older ones are in the audit log, which admins keep.",
	}
	for _, rec := range recs {
		page.Records = append(page.Records, pages.HistoryRow{
			Time: rec.Time, Level: rec.Level, What: rec.Msg,
			Details: pages.HistoryDetails(rec.Fields, "user"),
		})
	}
	return s.o.Pages.History(w, page)
}

// serveHistoryAPI is GET /hub/api/history: the same as JSON. A session
// sees its own (an admin's ?user= anyone's); an API token the policy
// lists names the user with ?user=. Session cookies are taken only from
// the hub's own pages, as for the rest of the API.
func (s *Site) serveHistoryAPI(w http.ResponseWriter, r *http.Request, _ *session.Session) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return pages.WriteJSON(w, http.StatusMethodNotAllowed, map[string]any{"error": "method not allowed"})
	}
	pol := s.o.Policy()
	var sess *session.Session
	var caller string
	admin := false
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, tok, _ := strings.Cut(auth, " ")
		name, ok := "", false
		if strings.EqualFold(scheme, "bearer") || strings.EqualFold(scheme, "token") {
			name, ok = pol.LookupAPIToken(strings.TrimSpace(tok))
		}
		if !ok {
			return s.apiRefuse(w, r, nil, http.StatusUnauthorized, "unknown API token", "bad_token")
		}
		caller, admin = "token:"+name, true
		if r.URL.Query().Get("user") == "" {
			return pages.WriteJSON(w, http.StatusBadRequest, map[string]any{"error": "an API token names the user: ?user=NAME"})
		}
	} else {
		sess = s.o.Login.Authenticate(r)
		if sess == nil {
			return s.apiRefuse(w, r, nil, http.StatusUnauthorized, "login or API token required", "no_session")
		}
		setUserPlaceholders(r, sess)
		if fromUserServer(r) {
			return s.apiRefuse(w, r, sess, http.StatusForbidden, "the API takes a session cookie only from the hub's own pages; scripts use an API token", "api_from_page")
		}
		if !pol.Known(sess.User, sess.Groups) {
			return s.apiRefuse(w, r, sess, http.StatusForbidden, "your account is not in this hub's policy", "not_in_policy")
		}
		caller, admin = sess.User, pol.IsAdmin(sess.User)
	}
	of, ok, err := s.historyFor(w, r, sess, caller, admin)
	if !ok {
		return err
	}
	recs, next := s.historyPage(r, of)
	if recs == nil {
		recs = []history.Record{}
	}
	body := map[string]any{"user": of, "records": recs}
	if l := olderLink("/hub/api/history", of, caller, next); l != "" {
		body["older"] = l
	}
	return pages.WriteJSON(w, http.StatusOK, body)
}
