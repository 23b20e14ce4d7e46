package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/pages"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/caddymodule/shares"
	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/policies/username"
)

// Bounds of shares and admin access grants.
const (
	// DefaultAdminAccess is an admin access grant's length when the admin
	// names none; MaxAdminAccess the longest one.
	DefaultAdminAccess = time.Hour
	MaxAdminAccess     = 8 * time.Hour
	// maxShare is the longest expiry a share may name.
	maxShare        = 366 * 24 * time.Hour
	maxShareNames   = 100
	maxReasonLength = 500
)

// ShareRequest is a share as the form and the API make it.
type ShareRequest struct {
	Server string   `json:"server"`
	Users  []string `json:"users"`
	Teams  []string `json:"teams"`
	// ExpiresIn is a duration ("8h", "7d"); empty: until revoked.
	ExpiresIn string `json:"expires_in"`
}

// parseDuration reads Go durations and whole days ("7d").
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("%q: want a duration such as 8h or 7d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q: want a duration such as 8h or 7d", s)
	}
	return d, nil
}

// splitNames reads user names separated by spaces or commas.
func splitNames(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
}

// NewShare checks a share request of sess's user against the policy and
// makes the grant to store. The error is for the user.
func NewShare(pol *policies.Policy, sess *session.Session, req ShareRequest, now time.Time) (shares.Grant, error) {
	g := shares.Grant{Kind: shares.KindShare, Owner: sess.User, Server: req.Server, By: sess.User, OwnerGroups: sess.Groups}
	if pol.Images[req.Server] == nil || !pol.Allowed(sess.User, sess.Groups, req.Server) {
		return g, fmt.Errorf("you have no server %q to share", req.Server)
	}
	if len(req.Users)+len(req.Teams) > maxShareNames {
		return g, fmt.Errorf("at most %d users and teams per share", maxShareNames)
	}
	for _, raw := range req.Users {
		u, err := username.Canonical(strings.TrimSpace(raw))
		if err != nil {
			return g, fmt.Errorf("user %q: %v", raw, err)
		}
		if u == sess.User {
			return g, errors.New("you need no share to open your own server")
		}
		if !slices.Contains(g.Users, u) {
			g.Users = append(g.Users, u)
		}
	}
	for _, t := range req.Teams {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if pol.Teams[t] == nil {
			return g, fmt.Errorf("there is no team %q", t)
		}
		if !slices.Contains(g.Teams, t) {
			g.Teams = append(g.Teams, t)
		}
	}
	if len(g.Users) == 0 && len(g.Teams) == 0 {
		return g, errors.New("name at least one user or team to share with")
	}
	if strings.TrimSpace(req.ExpiresIn) != "" {
		d, err := parseDuration(req.ExpiresIn)
		if err != nil {
			return g, fmt.Errorf("expiry %v", err)
		}
		if d > maxShare {
			return g, fmt.Errorf("expiry %s: at most a year", req.ExpiresIn)
		}
		g.Expires = now.Add(d).UTC()
	}
	return g, nil
}

// NewAdminAccess checks an admin's access request and makes its grant.
func NewAdminAccess(pol *policies.Policy, admin, user, server, reason, duration string, now time.Time) (shares.Grant, error) {
	user = policies.NormalizeUser(user)
	server, reason = strings.TrimSpace(server), strings.TrimSpace(reason)
	g := shares.Grant{Kind: shares.KindAdmin, Owner: user, Server: server, Users: []string{admin}, By: admin, Reason: reason}
	if !pol.IsAdmin(admin) {
		return g, errors.New("admins only")
	}
	if user == "" || username.Check(user) != nil {
		return g, fmt.Errorf("user %q is not a user name", user)
	}
	if user == admin {
		return g, errors.New("you need no access grant to open your own server")
	}
	if server != "*" && pol.Images[server] == nil {
		return g, fmt.Errorf("there is no server %q (an image key, or * for all)", server)
	}
	if reason == "" {
		return g, errors.New("a reason is required: the user sees it")
	}
	if len(reason) > maxReasonLength {
		return g, fmt.Errorf("the reason is longer than %d characters", maxReasonLength)
	}
	d := DefaultAdminAccess
	if strings.TrimSpace(duration) != "" {
		var err error
		if d, err = parseDuration(duration); err != nil {
			return g, fmt.Errorf("duration %v", err)
		}
	}
	if d > MaxAdminAccess {
		return g, fmt.Errorf("duration %s: at most %s", duration, MaxAdminAccess)
	}
	g.Expires = now.Add(d).UTC()
	return g, nil
}

// addGrant stores a grant and audits it.
func (s *Site) addGrant(r *http.Request, g shares.Grant) (shares.Grant, error) {
	g, err := s.o.Shares.Add(r.Context(), g, time.Now())
	if err != nil {
		return g, err
	}
	what := "share granted"
	if g.Kind == shares.KindAdmin {
		what = "admin access granted"
	}
	s.o.Audit.Info(what, zap.String("by", g.By), zap.String("owner", g.Owner), zap.String("server", g.Server), zap.String("grant", g.ID),
		zap.Strings("users", g.Users), zap.Strings("teams", g.Teams), zap.Time("expires", g.Expires), zap.String("reason", g.Reason))
	return g, nil
}

// revokeGrant removes a grant if may allows it, closes its websockets and
// audits it.
func (s *Site) revokeGrant(r *http.Request, id, by string, may func(shares.Grant) bool) error {
	g, err := s.o.Shares.Revoke(r.Context(), id, may)
	if err != nil {
		return err
	}
	n := 0
	if s.o.GrantChanged != nil {
		n = s.o.GrantChanged(g.ID)
	}
	what := "share revoked"
	if g.Kind == shares.KindAdmin {
		what = "admin access revoked"
	}
	s.o.Audit.Info(what, zap.String("by", by), zap.String("owner", g.Owner), zap.String("server", g.Server), zap.String("grant", g.ID), zap.Int("streams_closed", n))
	return nil
}

// sharingOff answers when shares (or server hosts) are not configured.
func (s *Site) sharingOff(w http.ResponseWriter, r *http.Request, sess *session.Session, adminAccess bool) (bool, error) {
	if s.o.Shares == nil || s.o.ServerHost == nil {
		return true, s.o.Pages.Problem(w, r, http.StatusNotFound, s.o.Login.Frame(sess, "Not found"), "Sharing needs server_host: servers on origins of their own.", "", nil)
	}
	if !adminAccess && !s.o.SharesEnabled {
		return true, s.o.Pages.Problem(w, r, http.StatusNotFound, s.o.Login.Frame(sess, "Not found"), "Sharing is off on this hub.", "", nil)
	}
	return false, nil
}

// serveShares takes the home page's share forms.
func (s *Site) serveShares(w http.ResponseWriter, r *http.Request, sess *session.Session) error {
	if off, err := s.sharingOff(w, r, sess, false); off {
		return err
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("shares take POST"))
	}
	if ok, err := s.checkForm(w, r, sess); !ok {
		return err
	}
	switch r.PostFormValue("action") {
	case "create":
		req := ShareRequest{Server: r.PostFormValue("server"), Users: splitNames(r.PostFormValue("users")), ExpiresIn: r.PostFormValue("expires_in")}
		if t := strings.TrimSpace(r.PostFormValue("team")); t != "" {
			req.Teams = []string{t}
		}
		g, err := NewShare(s.o.Policy(), sess, req, time.Now())
		if err != nil {
			return s.o.Pages.Problem(w, r, http.StatusBadRequest, s.o.Login.Frame(sess, "Not shared"), "Not shared: "+err.Error(), "/", nil)
		}
		if _, err := s.addGrant(r, g); err != nil {
			return s.o.Pages.Problem(w, r, http.StatusServiceUnavailable, s.o.Login.Frame(sess, "Not shared"), "Not shared: "+err.Error(), "/", nil)
		}
	case "revoke":
		err := s.revokeGrant(r, r.PostFormValue("id"), sess.User, func(g shares.Grant) bool { return g.Kind == shares.KindShare && g.Owner == sess.User })
		if err != nil {
			return s.o.Pages.Problem(w, r, http.StatusNotFound, s.o.Login.Frame(sess, "Not revoked"), "Not revoked: "+err.Error(), "/", nil)
		}
	default:
		return s.o.Pages.Problem(w, r, http.StatusBadRequest, s.o.Login.Frame(sess, "Bad request"), "Unknown action.", "/", nil)
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
	return nil
}

// serveAdminAccess takes the admin page's access and revocation forms.
func (s *Site) serveAdminAccess(w http.ResponseWriter, r *http.Request, sess *session.Session) error {
	if off, err := s.sharingOff(w, r, sess, true); off {
		return err
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("access grants take POST"))
	}
	if ok, err := s.checkForm(w, r, sess); !ok {
		return err
	}
	switch r.PostFormValue("action") {
	case "create":
		g, err := NewAdminAccess(s.o.Policy(), sess.User, r.PostFormValue("user"), r.PostFormValue("server"), r.PostFormValue("reason"), r.PostFormValue("duration"), time.Now())
		if err != nil {
			return s.o.Pages.Problem(w, r, http.StatusBadRequest, s.o.Login.Frame(sess, "No access"), "No access granted: "+err.Error(), "/hub/admin", nil)
		}
		if _, err := s.addGrant(r, g); err != nil {
			return s.o.Pages.Problem(w, r, http.StatusServiceUnavailable, s.o.Login.Frame(sess, "No access"), "No access granted: "+err.Error(), "/hub/admin", nil)
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return nil
	case "revoke":
		if err := s.revokeGrant(r, r.PostFormValue("id"), sess.User, func(shares.Grant) bool { return true }); err != nil {
			return s.o.Pages.Problem(w, r, http.StatusNotFound, s.o.Login.Frame(sess, "Not revoked"), "Not revoked: "+err.Error(), "/hub/admin", nil)
		}
	default:
		return s.o.Pages.Problem(w, r, http.StatusBadRequest, s.o.Login.Frame(sess, "Bad request"), "Unknown action.", "/hub/admin", nil)
	}
	http.Redirect(w, r, "/hub/admin", http.StatusSeeOther)
	return nil
}

// serveSharesAPI is the shares API of a user's own servers:
//
//	GET    /hub/api/shares        the user's shares, and servers shared with them
//	POST   /hub/api/shares        share: {"server", "users", "teams", "expires_in"}
//	DELETE /hub/api/shares/{id}   revoke one of the user's shares
//
// It takes the session cookie from the hub's own pages only, and state
// changes need the X-Hubgate-Csrf header.
func (s *Site) serveSharesAPI(w http.ResponseWriter, r *http.Request, _ *session.Session) error {
	sess := s.o.Login.Authenticate(r)
	if sess == nil {
		return s.apiRefuse(w, r, nil, http.StatusUnauthorized, "login required", "no_session")
	}
	setUserPlaceholders(r, sess)
	pol := s.o.Policy()
	if !pol.Known(sess.User, sess.Groups) {
		return s.apiRefuse(w, r, sess, http.StatusForbidden, "not in the policy", "not_in_policy")
	}
	if s.o.Shares == nil || s.o.ServerHost == nil || !s.o.SharesEnabled {
		return pages.WriteJSON(w, http.StatusNotFound, map[string]any{"error": "sharing is off on this hub (it needs server_host and shares on)"})
	}
	if fromUserServer(r) {
		return s.apiRefuse(w, r, sess, http.StatusForbidden, "the API takes a session cookie only from the hub's own pages", "api_from_page")
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if r.Header.Get("Sec-Fetch-Site") == "cross-site" || !s.o.Login.CheckCSRF(sess, r.Header.Get(CSRFHeader)) {
			return s.apiRefuse(w, r, sess, http.StatusForbidden, "missing or wrong "+CSRFHeader+" header", "csrf")
		}
	}
	rest := strings.TrimPrefix(r.URL.Path, "/hub/api/shares")
	switch {
	case rest == "" && r.Method == http.MethodGet:
		v := s.sharingView(r, sess)
		return pages.WriteJSON(w, http.StatusOK, map[string]any{"shares": nonNil(v.Mine), "shared_with_me": nonNil(v.WithMe), "admin_access": nonNil(v.AdminAccess)})
	case rest == "" && r.Method == http.MethodPost:
		var req ShareRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return pages.WriteJSON(w, http.StatusBadRequest, map[string]any{"error": "want JSON {server, users, teams, expires_in}: " + err.Error()})
		}
		g, err := NewShare(pol, sess, req, time.Now())
		if err != nil {
			return pages.WriteJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		}
		if g, err = s.addGrant(r, g); err != nil {
			return pages.WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error()})
		}
		return pages.WriteJSON(w, http.StatusCreated, s.grantView(r, g, time.Now()))
	case strings.HasPrefix(rest, "/") && r.Method == http.MethodDelete:
		err := s.revokeGrant(r, strings.TrimPrefix(rest, "/"), sess.User, func(g shares.Grant) bool { return g.Kind == shares.KindShare && g.Owner == sess.User })
		switch {
		case errors.Is(err, shares.ErrNotFound):
			return pages.WriteJSON(w, http.StatusNotFound, map[string]any{"error": "no such share of yours"})
		case err != nil:
			return pages.WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error()})
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	w.Header().Set("Allow", "GET, POST, DELETE")
	return pages.WriteJSON(w, http.StatusNotFound, map[string]any{"error": fmt.Sprintf("no API endpoint %s %s", r.Method, r.URL.Path)})
}

func nonNil(v []pages.GrantView) []pages.GrantView {
	if v == nil {
		return []pages.GrantView{}
	}
	return v
}

// grantView renders a grant for the pages and the API.
func (s *Site) grantView(r *http.Request, g shares.Grant, now time.Time) pages.GrantView {
	v := pages.GrantView{ID: g.ID, Kind: g.Kind, Owner: g.Owner, Server: g.Server, Users: nonNilStrings(g.Users), Teams: nonNilStrings(g.Teams),
		By: g.By, Reason: g.Reason, Created: g.Created, Expires: g.Expires, Active: g.Active(now)}
	if g.Server != "*" {
		v.URL = s.ServerURL(r, g.Owner, g.Server)
		if img := s.o.Policy().Images[g.Server]; img != nil && v.URL != "" {
			v.URL += strings.TrimPrefix(img.URL, "/")
		}
	}
	return v
}

func nonNilStrings(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

// sharingView is the home page's sharing part for sess's user.
func (s *Site) sharingView(r *http.Request, sess *session.Session) *pages.SharingView {
	pol := s.o.Policy()
	g := s.grants()
	v := &pages.SharingView{Shares: s.o.SharesEnabled}
	if s.o.SharesEnabled {
		v.Servers = pol.Grant(sess.User, sess.Groups).Images
	}
	inTeam := func(t string) bool { return inPolicyTeam(pol, t, sess.User, sess.Groups) }
	isAdmin := pol.IsAdmin(sess.User)
	for _, gr := range g.All {
		if !gr.Active(g.Now) {
			continue
		}
		switch {
		case gr.Kind == shares.KindShare && gr.Owner == sess.User:
			if s.o.SharesEnabled {
				v.Mine = append(v.Mine, s.grantView(r, gr, g.Now))
			}
		case gr.Kind == shares.KindShare && s.o.SharesEnabled && gr.Names(sess.User, inTeam):
			v.WithMe = append(v.WithMe, s.grantView(r, gr, g.Now))
		case gr.Kind == shares.KindAdmin && gr.Owner == sess.User:
			v.AdminAccess = append(v.AdminAccess, s.grantView(r, gr, g.Now))
		case gr.Kind == shares.KindAdmin && isAdmin && gr.Names(sess.User, nil):
			held := s.grantView(r, gr, g.Now)
			if gr.Server == "*" {
				held.URL = ""
			}
			v.Held = append(v.Held, held)
		}
	}
	return v
}

// adminAccessView is the admin page's list of every share and grant.
func (s *Site) adminAccessView(r *http.Request) *pages.AdminAccessView {
	g := s.grants()
	v := &pages.AdminAccessView{Shares: s.o.SharesEnabled, DefaultDuration: DefaultAdminAccess.String(), MaxDuration: MaxAdminAccess.String()}
	for _, gr := range g.All {
		if gr.Active(g.Now) {
			v.Grants = append(v.Grants, s.grantView(r, gr, g.Now))
		}
	}
	return v
}
