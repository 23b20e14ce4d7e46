package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/reqkind"
	"github.com/hubgate/hubgate/caddymodule/session"
)

// varUpstream is the request variable holding the chosen route's dial
// address: the embedded proxy's one upstream is this placeholder.
const varUpstream = "hubgate.upstream"

// Visitor is who a proxied request is for, as the gateway vouches.
type Visitor struct {
	// SessionID identifies the login; its websockets close at logout.
	SessionID string
	// User and Groups are re-checked against the policy on reloads.
	User   string
	Groups []string
	// Expires is when the session ends; its websockets close then.
	Expires time.Time
	// Assertion, if set, is the signed identity assertion to send.
	Assertion string
	// Owner is whose server it is, when the visitor is not its owner (a
	// share's guest, an admin with an access grant); Access says which
	// ("guest", "admin"). Both reach the app as X-Hubgate-Owner and
	// X-Hubgate-Access; empty for the owner.
	Owner, Access string
	// OwnerGroups are the owner's groups as the grant recorded them.
	OwnerGroups []string
	// Grant is the share or access grant the visit goes by; its
	// revocation closes the visitor's websockets.
	Grant string
}

// ProxyConfig is the per-config part of proxying.
type ProxyConfig struct {
	// MaxIdleConnsPerHost is the keep-alive pool per user server.
	MaxIdleConnsPerHost int
	// AssertionHeader carries Visitor.Assertion (when set).
	AssertionHeader string
	// StripHeaders are request header names, beyond the rule's, that
	// never reach an app (see headers.go).
	StripHeaders []string
}

// Proxy sends authorized requests to routes through Caddy's own reverse
// proxy: streaming, websockets, flushing and header handling are Caddy's.
// One is provisioned per config; the routes it serves are the runtime's.
type Proxy struct {
	rt     *Runtime
	rp     *reverseproxy.Handler
	cfg    ProxyConfig
	rules  *headerRules
	logger *zap.Logger
}

// NewProxy provisions the reverse proxy for one config.
func NewProxy(ctx caddy.Context, rt *Runtime, cfg ProxyConfig) (*Proxy, error) {
	transport := &reverseproxy.HTTPTransport{
		DialTimeout: caddy.Duration(5 * time.Second),
		KeepAlive: &reverseproxy.KeepAlive{
			MaxIdleConnsPerHost: cfg.MaxIdleConnsPerHost,
		},
	}
	if err := transport.Provision(ctx); err != nil {
		return nil, fmt.Errorf("provision proxy transport: %w", err)
	}
	rp := &reverseproxy.Handler{
		Transport: transport,
		// One static upstream whose address is the request's route:
		// Caddy replaces the placeholder per request (fillDialInfo), so
		// there is no per-request upstream provisioning, no global
		// dynamic-host map and no write to an Upstream shared by the
		// concurrent requests of a route. The one Host it shares holds
		// request counts and passive-health state only, and neither
		// health checks nor MaxRequests are configured; a request with
		// no route dials "" and fails as a 502.
		Upstreams: reverseproxy.UpstreamPool{{Dial: "{http.vars." + varUpstream + "}"}},
		// FlushInterval is left at Caddy's default (0): a response
		// that streams (no Content-Length: chunked output, long polls
		// answered piecewise; text/event-stream; incremental) is
		// flushed on every write, and websockets are hijacked, so no
		// notebook, terminal or RStudio event waits in a buffer. A
		// response of known length is written as it is copied, in one
		// write when small. Flushing those on every write too (-1) cost
		// a timer goroutine and a separate write of the headers per
		// request (reverseproxy's maxLatencyWriter): bench/PROFILE.md.
	}
	if err := provisionReverseProxy(ctx, rp); err != nil {
		return nil, fmt.Errorf("provision reverse proxy: %w", err)
	}
	return &Proxy{rt: rt, rp: rp, cfg: cfg, rules: newHeaderRules(cfg.StripHeaders), logger: ctx.Logger()}, nil
}

// Cleanup releases the reverse proxy.
func (p *Proxy) Cleanup() error { return p.rp.Cleanup() }

// Serve sends the request to the route's container: identity and
// forwarding headers a client may have sent are removed (headers.go),
// hubgate's cookies are not forwarded, and the container secret and the
// visitor's identity are added. The app's answer may not set hubgate's
// cookies nor redirect out of prefix (response.go). A websocket is
// registered (so logout and policy changes can close it), ends with the
// session, and its data frames count as activity.
func (p *Proxy) Serve(w http.ResponseWriter, r *http.Request, rt *Route, v Visitor, prefix string) error {
	p.rules.apply(r)
	session.StripOurCookies(r.Header)
	r.Header["Authorization"] = rt.authHdr
	if v.User == rt.user {
		r.Header["X-Hubgate-User"] = rt.userHdr
	} else {
		r.Header.Set("X-Hubgate-User", v.User)
	}
	if v.Owner != "" {
		r.Header.Set("X-Hubgate-Owner", v.Owner)
		r.Header.Set("X-Hubgate-Access", v.Access)
	}
	if p.cfg.AssertionHeader != "" {
		r.Header.Del(p.cfg.AssertionHeader)
		if v.Assertion != "" {
			r.Header.Set(p.cfg.AssertionHeader, v.Assertion)
		}
	}
	rt.touch()
	caddyhttp.SetVar(r.Context(), varUpstream, rt.inst.Addr)
	rf := &responseFilter{ResponseWriter: w, host: r.Host, prefix: prefix}
	w = rf
	if reqkind.IsUpgrade(r) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		defer p.rt.streams.add(v, rt.server, cancel)()
		if !v.Expires.IsZero() {
			// A websocket does not outlive the session it was opened with.
			t := time.AfterFunc(time.Until(v.Expires), cancel)
			defer t.Stop()
		}
		r = r.WithContext(ctx)
		aw := &activityWriter{ResponseWriter: w, r: rt}
		if r.ProtoMajor >= 2 && r.Body != nil {
			// HTTP/2 and HTTP/3 websockets are the request and response
			// bodies of an extended CONNECT, not a hijacked connection.
			r.Body = &activityBody{ReadCloser: r.Body, r: rt}
			aw.stream = true
		}
		w = aw
	}
	err := p.rp.ServeHTTP(w, r, nil)
	if rf.dropped > 0 {
		p.logger.Warn("app response headers dropped: hubgate cookies or redirects out of the server",
			zap.String("user", rt.user), zap.String("server", rt.server), zap.Int("dropped", rf.dropped))
	}
	if err != nil {
		var he caddyhttp.HandlerError
		if errors.As(err, &he) && (he.StatusCode == http.StatusBadGateway || he.StatusCode == http.StatusServiceUnavailable || he.StatusCode == http.StatusGatewayTimeout) {
			// The container may be gone; the next request looks again.
			p.rt.Forget(rt)
			p.logger.Warn("proxy to user server failed; route dropped",
				zap.String("user", rt.user), zap.String("server", rt.server), zap.String("container_id", shortID(rt.inst.ID)), zap.Error(err))
		}
	}
	return err
}

// Retryable reports a failed proxy attempt that may be made again: a safe
// method, no upgrade, and a gateway error (nothing was written yet).
func Retryable(r *http.Request, err error) bool {
	if (r.Method != http.MethodGet && r.Method != http.MethodHead) || reqkind.IsUpgrade(r) {
		return false
	}
	var he caddyhttp.HandlerError
	return errors.As(err, &he) && he.StatusCode == http.StatusBadGateway
}

// activityBody scans the client's websocket frames of an HTTP/2 or
// HTTP/3 stream for activity.
type activityBody struct {
	io.ReadCloser
	r    *Route
	scan frameScanner
}

func (b *activityBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.scan.sawData(p[:n]) {
		b.r.touch()
	}
	return n, err
}
