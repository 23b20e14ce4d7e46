package web

import (
	"crypto/subtle"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/assertion"
	"github.com/hubgate/hubgate/caddymodule/hub"
	"github.com/hubgate/hubgate/caddymodule/login"
	"github.com/hubgate/hubgate/caddymodule/pages"
	"github.com/hubgate/hubgate/caddymodule/reqkind"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/caddymodule/shares"
	"github.com/hubgate/hubgate/internal/randid"
	"github.com/hubgate/hubgate/policies"
)

// With server_host each server is served on a host of its own, so a page
// of one server is another origin than the hub and every other server.
// The hub's session cookie (host-only, on the hub's host) never reaches a
// server host; a server host gets its own short-lived, host-only cookie
// through a redirect handshake with the hub, as JupyterHub's subdomain
// mode does:
//
//  1. server host, no cookie: a state cookie is set there and the browser
//     is sent to the hub's /hub/authorize?host=...&state=...
//  2. the hub checks its session and Access (owner, share, admin access
//     grant) and sends the browser back to the server host's
//     /hub/server-callback with a one-time code, sealed, valid for a
//     minute, naming that host and the state
//  3. the server host checks the code (its host, its expiry, not used
//     before on this instance, its state equal to the state cookie's) and
//     sets its own cookie, which carries the hub session: a logout or
//     revocation at the hub ends it on the next request.
//
// Every request on a server host is then authorized by AuthorizeHost
// (the policy and the grants, on every request) and proxied as on the
// hub, identity headers stripped, the signed assertion added.

// Paths of the handshake.
const (
	authorizePath      = "/hub/authorize"
	serverCallbackPath = "/hub/server-callback"
)

// Handshake lifetimes.
const (
	serverCodeTTL  = time.Minute
	serverStateTTL = 10 * time.Minute
	// DefaultServerCookieTTL is how long a server host's cookie lasts
	// (never beyond the hub session); it is renewed while in use.
	DefaultServerCookieTTL = time.Hour
)

// serverCode is the one-time code of step 2.
type serverCode struct {
	Host    string          `json:"h"`
	State   string          `json:"st"`
	Nonce   string          `json:"n"`
	Expires int64           `json:"exp"`
	Session session.Session `json:"s"`
}

// serverState is the state cookie of step 1.
type serverState struct {
	State string `json:"st"`
	Next  string `json:"next"`
}

// hostState is the server-host side's memory: codes already used and
// opened cookies.
type hostState struct {
	used     *expirable.LRU[string, struct{}]
	opened   *expirable.LRU[string, session.HostSession]
	firstUse *expirable.LRU[string, struct{}]
}

func newHostState() *hostState {
	return &hostState{
		used:     expirable.NewLRU[string, struct{}](100000, nil, 2*serverCodeTTL),
		opened:   expirable.NewLRU[string, session.HostSession](10000, nil, 10*time.Minute),
		firstUse: expirable.NewLRU[string, struct{}](100000, nil, 24*time.Hour),
	}
}

// hostOnly is a Host without its port, lower-cased.
func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// serverOrigin is the origin of a server host: the hub's scheme and port
// with the server's host.
func (s *Site) serverOrigin(r *http.Request, host string) string {
	hub, err := url.Parse(s.o.Login.Origin(r))
	if err != nil {
		return "https://" + host
	}
	if p := hub.Port(); p != "" {
		host = net.JoinHostPort(host, p)
	}
	return hub.Scheme + "://" + host
}

// ServerURL is where a server is opened: its own origin with server_host,
// the hub's path otherwise. It is "" when the names make no host.
func (s *Site) ServerURL(r *http.Request, owner, server string) string {
	if s.o.ServerHost == nil {
		return UserPrefix(owner, server)
	}
	host, err := s.o.ServerHost.Host(owner, server)
	if err != nil {
		return ""
	}
	return s.serverOrigin(r, host) + UserPrefix(owner, server)
}

// grants is what Access and AuthorizeHost know of shares and access
// grants right now; none until the store was read (fail closed).
func (s *Site) grants() Grants {
	g := Grants{Shares: s.o.SharesEnabled, Now: time.Now()}
	if s.o.Shares != nil && s.o.Shares.Ready() {
		g.All = s.o.Shares.All()
	}
	return g
}

// redirectToServerHost answers /user/{name}/{server}/... on the hub's
// host when servers have hosts of their own: navigations are sent there,
// nothing is proxied on the hub's origin.
func (s *Site) redirectToServerHost(w http.ResponseWriter, r *http.Request, sess *session.Session) error {
	up, ok := ParseUserPath(r.URL)
	if !ok || up.Server == "" {
		http.Redirect(w, r, "/", http.StatusFound)
		return nil
	}
	owner := policies.NormalizeUser(up.Name)
	target := s.ServerURL(r, owner, up.Server)
	if target == "" {
		return s.refuse(w, r, sess, http.StatusNotFound, "This server's name is too long for a host of its own.", "bad_path")
	}
	if (r.Method != http.MethodGet && r.Method != http.MethodHead) || reqkind.IsUpgrade(r) {
		return s.refuse(w, r, sess, http.StatusMisdirectedRequest, "Servers are served on their own hosts: "+target, "server_host")
	}
	target += (&url.URL{Path: up.Tail}).EscapedPath()
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}

// serveAuthorize is step 2 of the handshake, on the hub's host.
func (s *Site) serveAuthorize(w http.ResponseWriter, r *http.Request, sess *session.Session) error {
	if s.o.ServerHost == nil {
		return s.o.Pages.Problem(w, r, http.StatusNotFound, s.o.Login.Frame(sess, "Not found"), "There is nothing at this address.", "", nil)
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		return pages.WriteJSON(w, http.StatusMethodNotAllowed, map[string]any{"error": "authorize takes GET"})
	}
	q := r.URL.Query()
	host, state := hostOnly(q.Get("host")), q.Get("state")
	owner, server, ok := s.o.ServerHost.Match(host)
	if !ok || state == "" || len(state) > 64 {
		return s.refuse(w, r, sess, http.StatusBadRequest, "This is not the address of a server.", "bad_authorize")
	}
	d := Access(s.o.Policy(), sess, owner, server, s.grants())
	if !d.Allow {
		return s.refuse(w, r, sess, d.Status, d.Message, d.Reason, zap.String("owner", owner), zap.String("server", server))
	}
	code, err := s.o.Login.Seal(session.PurposeServerCode, serverCode{
		Host: host, State: state, Nonce: randid.ID(), Expires: time.Now().Add(serverCodeTTL).Unix(), Session: *sess,
	})
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, s.serverOrigin(r, host)+serverCallbackPath+"?code="+url.QueryEscape(code), http.StatusFound)
	return nil
}

// serveServerHost serves every request on a server's own host.
func (s *Site) serveServerHost(w http.ResponseWriter, r *http.Request, owner, server string) error {
	host := hostOnly(r.Host)
	if r.URL.Path == serverCallbackPath {
		return s.serverCallback(w, r, host)
	}
	var sess *session.Session
	var hs *session.HostSession
	if cred, ok := personalToken(r); ok && s.o.Tokens != nil {
		// A token request (scripts, editors): the token alone says who it
		// is, and it reaches only its owner's own servers (within its
		// scope), never a server shared with its owner (bearer.go).
		ts, tr, err := s.tokenSession(w, r, cred)
		if ts == nil {
			return err
		}
		if ts.User != owner || !tokenReaches(tr, server) {
			return s.refuse(w, tr, ts, http.StatusForbidden, "This token does not reach this server.", "token_scope", zap.String("owner", owner), zap.String("server", server))
		}
		sess, r = ts, tr
	} else {
		var ok bool
		if hs, ok = s.hostSession(r, host); !ok {
			return s.serverLogin(w, r, host)
		}
		sess = &hs.Session
		setUserPlaceholders(r, sess)
	}
	origin := func() string { return s.serverOrigin(r, host) }
	d := AuthorizeHost(s.o.Policy(), sess, r, owner, server, s.grants(), origin)
	if !d.Allow {
		if d.Redirect != "" {
			status := d.Status
			if status == 0 {
				status = http.StatusFound
			}
			http.Redirect(w, r, d.Redirect, status)
			return nil
		}
		return s.refuse(w, r, sess, d.Status, d.Message, d.Reason, zap.String("owner", owner), zap.String("server", server), zap.String("origin", r.Header.Get("Origin")))
	}
	if hs != nil {
		s.renewHostCookie(w, hs)
	}
	if d.Grant != nil {
		s.auditFirstUse(sess, d)
	}
	visit := func(rt *hub.Route) error {
		return s.o.Proxy.Serve(w, r, rt, s.hostVisitor(r, sess, d), UserPrefix(owner, server))
	}
	rt, cached, done, err := s.resolve(w, r, sess, d)
	if done {
		return err
	}
	err = visit(rt)
	if err != nil && cached && hub.Retryable(r, err) {
		rt, _, done, err := s.resolve(w, r, sess, d)
		if done {
			return err
		}
		return visit(rt)
	}
	return err
}

// hostVisitor is who a proxied request on a server host is for.
func (s *Site) hostVisitor(r *http.Request, sess *session.Session, d Decision) hub.Visitor {
	v := hub.Visitor{SessionID: sess.ID, User: sess.User, Groups: sess.Groups, Expires: time.Unix(sess.Expires, 0)}
	var acc *assertion.Access
	if g := d.Grant; g != nil {
		v.Owner, v.OwnerGroups, v.Grant = d.Owner, g.OwnerGroups, g.ID
		v.Access = "guest"
		if g.Kind == shares.KindAdmin {
			v.Access = "admin"
		}
		if !g.Expires.IsZero() && g.Expires.Before(v.Expires) {
			v.Expires = g.Expires
		}
		acc = &assertion.Access{Owner: d.Owner, Kind: v.Access, Grant: g.ID, Reason: g.Reason}
		if !g.Expires.IsZero() {
			acc.Until = g.Expires.Unix()
		}
	}
	if s.o.SignAssertions && s.o.Signer != nil {
		tok, err := s.o.Signer.SignAccess(s.o.Login.Origin(r), sess, d.Server, acc)
		if err != nil {
			s.o.Logger.Error("signing the identity assertion failed", zap.String("user", sess.User), zap.Error(err))
		}
		v.Assertion = tok
	}
	return v
}

// auditFirstUse records a guest's or an admin's first use of a grant in
// a session on this instance (later requests are not recorded again).
func (s *Site) auditFirstUse(sess *session.Session, d Decision) {
	k := d.Grant.ID + "\x00" + sess.ID
	if s.hosts.firstUse.Contains(k) {
		return
	}
	s.hosts.firstUse.Add(k, struct{}{})
	what := "share used"
	if d.Grant.Kind == shares.KindAdmin {
		what = "admin access used"
	}
	s.o.Audit.Info(what, zap.String("user", sess.User), zap.String("owner", d.Owner), zap.String("server", d.Server),
		zap.String("grant", d.Grant.ID), zap.String("session", session.Tag(sess.ID)), zap.String("reason", d.Grant.Reason))
}

// hostSession opens and checks the server host's cookie.
func (s *Site) hostSession(r *http.Request, host string) (*session.HostSession, bool) {
	value := session.CookieValue(r.Header, session.ServerCookie)
	if value == "" {
		return nil, false
	}
	hs, ok := s.hosts.opened.Get(value)
	if !ok {
		if err := s.o.Login.Open(session.PurposeServerSession, value, &hs); err != nil {
			return nil, false
		}
		s.hosts.opened.Add(value, hs)
	}
	if hs.Host != host || time.Now().Unix() >= hs.Until {
		return nil, false
	}
	if !s.o.Login.StillValid(r, &hs.Session) {
		return nil, false
	}
	return &hs, true
}

// serverLogin is step 1: browsers are sent to the hub, others told 401.
func (s *Site) serverLogin(w http.ResponseWriter, r *http.Request, host string) error {
	if (r.Method != http.MethodGet && r.Method != http.MethodHead) || reqkind.IsUpgrade(r) || !reqkind.WantsHTML(r) {
		w.Header().Set("WWW-Authenticate", `Cookie realm="hubgate"`)
		return pages.WriteJSON(w, http.StatusUnauthorized, map[string]any{"error": "login required: open this server in the browser first", "login": s.o.Login.Origin(r) + "/hub/login"})
	}
	next := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		next += "?" + r.URL.RawQuery
	}
	st := serverState{State: randid.ID(), Next: login.SafeNext(next)}
	sealed, err := s.o.Login.Seal(session.PurposeServerState, st)
	if err != nil {
		return err
	}
	session.SetCookie(w, session.ServerStateCookie, sealed, serverStateTTL, http.SameSiteLaxMode)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, s.o.Login.Origin(r)+authorizePath+"?host="+url.QueryEscape(host)+"&state="+url.QueryEscape(st.State), http.StatusFound)
	return nil
}

// serverCallback is step 3: the code checked, the server host's cookie set.
func (s *Site) serverCallback(w http.ResponseWriter, r *http.Request, host string) error {
	fail := func(reason string) error {
		s.denied(r, nil, http.StatusBadRequest, reason, zap.String("host", host))
		return s.o.Pages.Problem(w, r, http.StatusBadRequest, pages.Frame{Title: "Login failed"}, "This login link is not valid (any more). Open the server again from the hub.", s.o.Login.Origin(r)+"/", nil)
	}
	if r.Method != http.MethodGet {
		return fail("bad_callback")
	}
	var c serverCode
	if err := s.o.Login.Open(session.PurposeServerCode, r.URL.Query().Get("code"), &c); err != nil {
		return fail("bad_code")
	}
	var st serverState
	if err := s.o.Login.Open(session.PurposeServerState, session.CookieValue(r.Header, session.ServerStateCookie), &st); err != nil {
		return fail("no_state")
	}
	now := time.Now()
	switch {
	case c.Host != host:
		return fail("code_other_host")
	case now.Unix() >= c.Expires:
		return fail("code_expired")
	case subtle.ConstantTimeCompare([]byte(c.State), []byte(st.State)) != 1:
		return fail("state_mismatch")
	}
	if s.hosts.used.Contains(c.Nonce) {
		return fail("code_reused")
	}
	s.hosts.used.Add(c.Nonce, struct{}{})
	if !s.o.Login.StillValid(r, &c.Session) {
		return fail("session_ended")
	}
	hs := session.HostSession{Session: c.Session, Host: host}
	if err := s.setHostCookie(w, &hs, now); err != nil {
		return err
	}
	session.ClearCookie(w, session.ServerStateCookie)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	next := st.Next
	if owner, server, ok := s.o.ServerHost.Match(host); ok && !strings.HasPrefix(next, UserPrefix(owner, server)) {
		next = UserPrefix(owner, server)
	}
	http.Redirect(w, r, next, http.StatusFound)
	return nil
}

// setHostCookie seals hs with a fresh Until and sets it.
func (s *Site) setHostCookie(w http.ResponseWriter, hs *session.HostSession, now time.Time) error {
	ttl := s.o.ServerCookieTTL
	if ttl <= 0 {
		ttl = DefaultServerCookieTTL
	}
	hs.Until = min(now.Add(ttl).Unix(), hs.Session.Expires)
	sealed, err := s.o.Login.Seal(session.PurposeServerSession, hs)
	if err != nil {
		return err
	}
	session.SetCookie(w, session.ServerCookie, sealed, time.Until(time.Unix(hs.Until, 0)), http.SameSiteLaxMode)
	return nil
}

// renewHostCookie renews a cookie past half its life, so a server in use
// keeps its cookie while the hub session lasts.
func (s *Site) renewHostCookie(w http.ResponseWriter, hs *session.HostSession) {
	ttl := s.o.ServerCookieTTL
	if ttl <= 0 {
		ttl = DefaultServerCookieTTL
	}
	now := time.Now()
	if time.Until(time.Unix(hs.Until, 0)) > ttl/2 || hs.Until >= hs.Session.Expires {
		return
	}
	renewed := *hs
	if err := s.setHostCookie(w, &renewed, now); err != nil {
		s.o.Logger.Warn("renewing a server host's cookie failed", zap.Error(err))
	}
}
