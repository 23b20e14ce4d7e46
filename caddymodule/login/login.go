// Package login turns a request into a session: the local account form,
// the OIDC and GitHub flows (state, nonce and PKCE on every login), the
// logout and its revocation on every instance, and the GitHub membership
// re-checks. It owns hubgate's cookies.
//
// It knows nothing of containers, routes or proxying: what a login or
// logout means for open websockets it reports through the callbacks in
// Options. Pages come from the pages package.
package login

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/idp"
	"github.com/hubgate/hubgate/caddymodule/pages"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
)

// Defaults of Config.
const (
	DefaultSessionTTL      = 24 * time.Hour
	DefaultFailuresPerUser = 5
	DefaultFailuresPerIP   = 20
	DefaultFailureWindow   = 15 * time.Minute
	DefaultRecheckInterval = 10 * time.Minute
	// revocationRefresh bounds how late another replica honours a
	// logout (plus one storage read).
	revocationRefresh = 1 * time.Second
	// stateSweep is how often used OAuth states that expired are deleted
	// from storage.
	stateSweep               = 10 * time.Minute
	oauthStateTTL            = 10 * time.Minute
	loginStateTTL            = time.Hour
	maxCookieValue           = 3900
	maxCallbackQuery         = 8192
	sessionCacheSize         = 10000
	providerLocal            = "local"
	recheckOnFirstUseTimeout = 15 * time.Second
	// idpCallsPerIP is how many provider logins one client IP may start
	// (and codes it may have exchanged) per failure window: generous for a
	// team behind one NAT, small against a flood.
	idpCallsPerIP = 200
)

// Config is the login configuration of one config load.
type Config struct {
	// PublicURL is the hub's origin ("https://hub.example.org") when it is
	// served behind a proxy or under a catch-all site address; empty: the
	// request's own scheme and host.
	PublicURL string
	// SessionTTL is how long a login lasts.
	SessionTTL time.Duration
	// Local offers the policy's local accounts.
	Local bool
	// AutoLogin goes straight to the one external provider when local
	// accounts are off.
	AutoLogin bool
	// Providers are the external identity providers, in login page order.
	Providers []idp.Provider
	// RecheckInterval is how often GitHub memberships are read again.
	RecheckInterval time.Duration
	// FailuresPerUser, FailuresPerIP and FailureWindow limit failed logins.
	FailuresPerUser, FailuresPerIP int
	FailureWindow                  time.Duration
}

// Options are the parts a login works with.
type Options struct {
	// Codec seals cookies and derives CSRF tokens.
	Codec *session.Codec
	// Store keeps identity bindings and GitHub tokens.
	Store *idp.Store
	// State is what outlives config reloads (see NewState).
	State *State
	// Policy returns the policy in force.
	Policy func() *policies.Policy
	// Pages renders the login, logout and error pages.
	Pages *pages.Renderer
	// Logger and Audit receive operational logs and the audit trail.
	Logger, Audit *zap.Logger
	// Denied counts a refusal (the denials metric), by reason.
	Denied func(reason string)
	// Seen records that a user was here (for the admin page).
	Seen func(user string)
	// SessionEnded closes what a revoked session still holds open (its
	// websockets); AccessLost does the same for a user whose GitHub
	// memberships no longer grant what they did.
	// Both report how many streams they closed.
	SessionEnded func(sid string) int
	AccessLost   func(user string) int
}

// Authenticator is the login side of one config load. Its handlers serve
// /hub/login, /hub/oauth_start/{provider}, /hub/oauth_callback and
// /hub/logout; Authenticate gives every other handler the session.
type Authenticator struct {
	cfg      Config
	o        Options
	byName   map[string]idp.Provider
	github   *idp.GitHub
	sessions *lru.Cache[string, session.Session] // opened cookies, by sealed value
	// credTags holds the local accounts' credential tags of one policy
	// (see credentialTag), so that a request does not hash them again.
	credTags atomic.Pointer[credTagCache]

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds the login side and starts its background loops (revocation
// refresh, GitHub re-checks) until Close. It makes no blocking call but
// one bounded read of the revocation records when none was read yet.
func New(cfg Config, o Options) (*Authenticator, error) {
	sessions, err := lru.New[string, session.Session](sessionCacheSize)
	if err != nil {
		return nil, err
	}
	for _, f := range []*func(string){&o.Denied, &o.Seen} {
		if *f == nil {
			*f = func(string) {}
		}
	}
	for _, f := range []*func(string) int{&o.SessionEnded, &o.AccessLost} {
		if *f == nil {
			*f = func(string) int { return 0 }
		}
	}
	a := &Authenticator{cfg: cfg, o: o, byName: map[string]idp.Provider{}, sessions: sessions}
	for _, p := range cfg.Providers {
		a.byName[p.Name()] = p
		if g, ok := p.(*idp.GitHub); ok {
			a.github = g
		}
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	o.State.limiter.configure(cfg.FailuresPerUser, cfg.FailuresPerIP, cfg.FailureWindow)
	o.State.idpCalls.configure(idpCallsPerIP, idpCallsPerIP, cfg.FailureWindow)
	if !o.State.revoked.Ready() {
		lctx, cancel := context.WithTimeout(a.ctx, 3*time.Second)
		a.refreshRevocations(lctx)
		cancel()
	}
	a.loop(revocationRefresh, a.refreshRevocations)
	a.loop(stateSweep, a.sweepStates)
	if a.github != nil {
		a.loop(min(max(cfg.RecheckInterval/4, 100*time.Millisecond), 30*time.Second), a.recheckDue)
	}
	return a, nil
}

// Close stops the background loops; it is safe to call more than once.
func (a *Authenticator) Close() {
	a.cancel()
	a.wg.Wait()
}

// loop runs fn every period until Close.
func (a *Authenticator) loop(period time.Duration, fn func(context.Context)) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-a.ctx.Done():
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
			fn(ctx)
			cancel()
		}
	}()
}

// Ready reports whether sessions can be checked (the revocation records
// were read), for the health endpoint.
func (a *Authenticator) Ready() bool { return a.o.State.revoked.Ready() }

// CSRF is the CSRF token of a session.
func (a *Authenticator) CSRF(s *session.Session) string { return a.o.Codec.CSRFToken(s.ID) }

// CheckCSRF checks a token a client sent for s.
func (a *Authenticator) CheckCSRF(s *session.Session, got string) bool {
	return session.CheckCSRF(got, a.CSRF(s))
}

// GitURL is the git host containers clone team repos from.
func (a *Authenticator) GitURL() string {
	if a.github != nil {
		return a.github.URL()
	}
	return idp.DefaultGitHubURL
}

// problem shows a login failure page and audits it. The message is ours
// (never a provider's raw text).
func (a *Authenticator) problem(w http.ResponseWriter, r *http.Request, status int, msg, reason, provider string, fields ...zap.Field) error {
	a.o.Audit.Warn("login failed", append(fields, zap.String("provider", provider), zap.String("remote_ip", ClientIP(r)), zap.String("reason", reason))...)
	w.Header().Set("Cache-Control", "no-store")
	return a.o.Pages.Problem(w, r, status, pages.Frame{Title: "Login failed"}, msg, "/hub/login", nil)
}

// refuse answers a refused request on the login paths and counts it.
func (a *Authenticator) refuse(w http.ResponseWriter, r *http.Request, status int, msg, reason string, fields ...zap.Field) error {
	a.o.Audit.Warn("denied", append(fields, zap.String("reason", reason), zap.String("path", r.URL.Path), zap.Int("status", status))...)
	a.o.Denied(reason)
	return a.o.Pages.Problem(w, r, status, pages.Frame{}, msg, "", nil)
}
