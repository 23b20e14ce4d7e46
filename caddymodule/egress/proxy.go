// Package egress is hubgate's egress proxy: the only way out of a user
// container whose network has no route out. It is an HTTP forward proxy
// (CONNECT tunnels and plain-HTTP absolute-URI requests) that knows the
// calling container by the credential in its HTTP_PROXY (see Credential),
// checks that the container still runs with that credential at the source
// address it calls from, and lets it reach only the hosts and ports its
// user's teams list under egress: in the current policy (plus the git host
// for users whose teams have repos). Everything else is refused with a
// message the user sees, an audit record and a metric.
//
// The policy is read on every request, so a reload applies to the next
// request of a kept-alive connection and to every new one; a CONNECT
// tunnel is decided once, when it is opened.
//
// It knows nothing of Caddy's config: the glue gives it a View per config
// and a Callers to look containers up.
package egress

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/hubgate/hubgate/policies"
)

// Caller is what the engine says of the container a credential names.
type Caller struct {
	// Nonce is the running container's nonce; a credential made for
	// another (an earlier container of the same server) does not match.
	Nonce string
	// IP is the container's address on the containers' network, the one
	// it calls the proxy from.
	IP netip.Addr
	// Groups are the identity-provider groups its user had when it
	// started (the policy's teams are applied to them on each request).
	Groups []string
}

// Callers finds the running container of a user's server.
type Callers interface {
	// Caller returns the running container of user's server, or an error
	// when there is none. nonce is the one the credential names: a
	// cached record of another container should be looked up afresh.
	Caller(ctx context.Context, user, server, nonce string) (Caller, error)
}

// View is what one loaded config gives the proxy.
type View struct {
	// Credentials checks the proxy credentials (see Credential).
	Credentials Deriver
	// Callers finds the containers credentials name.
	Callers Callers
	// Policy returns the policy in force.
	Policy func() *policies.Policy
	// Logger receives operational logs, Audit every refusal.
	Logger, Audit *zap.Logger
	// RepoHosts are "host:port" rules allowed to users whose teams have
	// repos (the git host the repos are cloned from).
	RepoHosts []string
	// Resolve maps "host:port" to the "ip:port" the proxy connects to
	// instead of resolving the name (like curl's --resolve). Set by the
	// admin, its targets are trusted: the address checks below are not
	// applied to them.
	Resolve map[string]string
}

// Proxy is the egress proxy's HTTP handler.
type Proxy struct {
	view atomic.Pointer[View]
	// deny are address ranges never connected to, besides loopback,
	// link-local, multicast, unspecified and the gateway host's own
	// addresses: the containers' network.
	deny atomic.Pointer[[]netip.Prefix]
	fwd  *httputil.ReverseProxy

	localMu   sync.Mutex
	local     []netip.Addr
	localTime time.Time
}

// dialTimeout bounds connecting to an allowed host.
const dialTimeout = 10 * time.Second

// NewProxy returns a proxy. It serves nothing until SetView.
func NewProxy() *Proxy {
	p := &Proxy{}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           p.dial,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	p.fwd = &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = pr.In.URL
			pr.Out.Host = pr.In.Host
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			refuse(w, http.StatusBadGateway, "egress to "+r.Host+" failed: "+dialError(err))
		},
	}
	return p
}

// SetView makes v the config the proxy follows.
func (p *Proxy) SetView(v *View) { p.view.Store(v) }

// SetDeny sets address ranges the proxy never connects to (the
// containers' own network), besides the ones it always refuses.
func (p *Proxy) SetDeny(prefixes []netip.Prefix) { p.deny.Store(&prefixes) }

// ServeHTTP serves one proxy request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	v := p.view.Load()
	if v == nil {
		refuse(w, http.StatusServiceUnavailable, "hubgate's egress proxy is not configured")
		return
	}
	kind := "http"
	if r.Method == http.MethodConnect {
		kind = "connect"
	}
	host, port, err := target(r)
	if err != nil {
		requests.WithLabelValues(kind, "invalid").Inc()
		respond(w, r, http.StatusBadRequest, err.Error())
		return
	}
	hostport := net.JoinHostPort(host, strconv.Itoa(port))
	claim, caller, reason := p.identify(r, v)
	if reason != "" {
		requests.WithLabelValues(kind, "unauthenticated").Inc()
		v.Audit.Warn("egress refused", zap.String("user", claim.User), zap.String("server", claim.Server),
			zap.String("host", host), zap.Int("port", port), zap.String("reason", reason),
			zap.String("remote_ip", remoteIP(r).String()))
		w.Header().Set("Proxy-Authenticate", `Basic realm="hubgate egress"`)
		respond(w, r, http.StatusProxyAuthRequired, "hubgate egress proxy: "+reason)
		return
	}
	pol := v.Policy()
	grant := pol.Grant(claim.User, caller.Groups)
	allowed := policies.EgressAllows(grant.Egress, host, port) ||
		(len(grant.Repos) > 0 && policies.EgressAllows(v.RepoHosts, host, port))
	if !allowed {
		requests.WithLabelValues(kind, "refused").Inc()
		v.Audit.Warn("egress refused", zap.String("user", claim.User), zap.String("server", claim.Server),
			zap.String("host", host), zap.Int("port", port), zap.Strings("teams", grant.Teams), zap.String("reason", "not allowed"))
		respond(w, r, http.StatusForbidden, refusal(hostport, claim.User, grant.Teams))
		return
	}
	requests.WithLabelValues(kind, "allowed").Inc()
	if r.Method == http.MethodConnect {
		p.tunnel(w, r, v, hostport, claim)
		return
	}
	r.Header.Del("Proxy-Authorization")
	p.fwd.ServeHTTP(w, r)
}

// refusal is the message a refused user sees.
func refusal(hostport, user string, teams []string) string {
	switch len(teams) {
	case 0:
		return fmt.Sprintf("egress to %s is not allowed: user %s is in no team", hostport, user)
	case 1:
		return fmt.Sprintf("egress to %s is not allowed for team %s", hostport, teams[0])
	}
	return fmt.Sprintf("egress to %s is not allowed for teams %s", hostport, strings.Join(teams, ", "))
}

// identify checks the request's proxy credential and that the container
// it names runs, with that credential, at the request's source address.
// A non-empty reason says why not.
func (p *Proxy) identify(r *http.Request, v *View) (Claim, Caller, string) {
	name, pass, ok := proxyAuth(r)
	if !ok {
		return Claim{}, Caller{}, "proxy credentials missing: use the HTTP_PROXY your server was started with"
	}
	claim, ok := Verify(v.Credentials, name, pass)
	if !ok {
		return Claim{}, Caller{}, "proxy credentials not valid: use the HTTP_PROXY your server was started with"
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	c, err := v.Callers.Caller(ctx, claim.User, claim.Server, claim.Nonce)
	switch {
	case err != nil:
		return claim, Caller{}, "the server these credentials belong to is not running"
	case c.Nonce != claim.Nonce:
		return claim, Caller{}, "these credentials belong to an earlier container of this server"
	case c.IP != remoteIP(r):
		return claim, Caller{}, "these credentials belong to another container"
	}
	return claim, c, ""
}

// proxyAuth returns the Basic credentials of Proxy-Authorization.
func proxyAuth(r *http.Request) (name, pass string, ok bool) {
	h := r.Header.Get("Proxy-Authorization")
	const prefix = "Basic "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h[len(prefix):]))
	if err != nil {
		return "", "", false
	}
	name, pass, ok = strings.Cut(string(raw), ":")
	return name, pass, ok
}

func remoteIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// target is the host and port a proxy request is for.
func target(r *http.Request) (string, int, error) {
	var hostport string
	if r.Method == http.MethodConnect {
		hostport = r.Host
	} else {
		if !r.URL.IsAbs() || r.URL.Host == "" {
			return "", 0, errors.New("this is hubgate's egress proxy: send requests for other hosts through it (HTTP_PROXY), not to it")
		}
		if r.URL.Scheme != "http" {
			return "", 0, fmt.Errorf("the egress proxy forwards http:// URLs; for %s:// use a CONNECT tunnel (HTTPS_PROXY)", r.URL.Scheme)
		}
		hostport = r.URL.Host
		if r.URL.Port() == "" {
			hostport = net.JoinHostPort(strings.Trim(r.URL.Host, "[]"), "80")
		}
	}
	host, ps, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", 0, fmt.Errorf("invalid target %q: want host:port", truncate(hostport))
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("invalid port in %q", truncate(hostport))
	}
	if !validHost(host) {
		return "", 0, fmt.Errorf("invalid host in %q", truncate(hostport))
	}
	return strings.ToLower(strings.TrimSuffix(host, ".")), port, nil
}

// validHost accepts host names and IP literals, so that a host is safe
// in a status line and a log.
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

func truncate(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// tunnel opens a CONNECT tunnel to hostport.
func (p *Proxy) tunnel(w http.ResponseWriter, r *http.Request, v *View, hostport string, claim Claim) {
	ctx, cancel := context.WithTimeout(r.Context(), dialTimeout)
	up, err := p.dial(ctx, "tcp", hostport)
	cancel()
	if err != nil {
		requests.WithLabelValues("connect", "error").Inc()
		v.Logger.Info("egress connection failed", zap.String("user", claim.User), zap.String("server", claim.Server),
			zap.String("target", hostport), zap.Error(err))
		respond(w, r, http.StatusBadGateway, "egress to "+hostport+" failed: "+dialError(err))
		return
	}
	defer up.Close()
	hj, ok := w.(http.Hijacker)
	if !ok {
		respond(w, r, http.StatusInternalServerError, "the egress proxy cannot tunnel on this connection")
		return
	}
	down, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer down.Close()
	if _, err := io.WriteString(down, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	// Bytes the client sent after the CONNECT (a TLS ClientHello) may sit
	// in the server's buffer.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := up.Write(b); err != nil {
			return
		}
	}
	splice(down, up)
}

// splice copies both ways until both directions are done.
func splice(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	<-done
}

// respond writes a refusal or error. For CONNECT the message is also the
// status line's reason phrase, which is what tools print of a failed
// tunnel (pip, Python: "Tunnel connection failed: 403 egress to ...").
func respond(w http.ResponseWriter, r *http.Request, status int, msg string) {
	w.Header().Set("X-Hubgate-Egress", "refused")
	if r.Method != http.MethodConnect {
		refuse(w, status, msg)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		refuse(w, status, msg)
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	reason := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, msg)
	body := msg + "\n"
	fmt.Fprintf(brw, "HTTP/1.1 %d %s\r\n", status, reason)
	for k, vs := range w.Header() {
		for _, v := range vs {
			fmt.Fprintf(brw, "%s: %s\r\n", k, v)
		}
	}
	fmt.Fprintf(brw, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	_ = brw.Flush()
}

func refuse(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("X-Hubgate-Egress", "refused")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

// errForbidden is returned for a connection to an address the proxy never
// connects to.
type errForbidden struct{ addr string }

func (e errForbidden) Error() string {
	return "it resolves to " + e.addr + ", an address of the gateway or its containers' network, which the egress proxy never connects to"
}

func dialError(err error) string {
	var f errForbidden
	if errors.As(err, &f) {
		return f.Error()
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return "no such host"
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ETIMEDOUT) {
		return "connection timed out"
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return "connection refused"
	}
	return "connection failed"
}

// dial connects to hostport: to the admin's Resolve entry if there is
// one, else to the resolved name, refusing addresses of the gateway and
// its networks (checked on the address actually connected to, so a name
// that resolves differently on a second lookup gains nothing).
func (p *Proxy) dial(ctx context.Context, network, hostport string) (net.Conn, error) {
	v := p.view.Load()
	d := net.Dialer{Timeout: dialTimeout}
	if v != nil {
		if to, ok := v.Resolve[strings.ToLower(hostport)]; ok {
			return d.DialContext(ctx, network, to)
		}
	}
	d.ControlContext = func(_ context.Context, _, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return errForbidden{addr: address}
		}
		if p.forbidden(ap.Addr().Unmap()) {
			return errForbidden{addr: ap.Addr().Unmap().String()}
		}
		return nil
	}
	return d.DialContext(ctx, network, hostport)
}

// forbidden reports whether a is never connected to.
func (p *Proxy) forbidden(a netip.Addr) bool {
	if !a.IsValid() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsMulticast() ||
		a.IsUnspecified() || a.IsInterfaceLocalMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return true
	}
	if deny := p.deny.Load(); deny != nil {
		for _, pfx := range *deny {
			if pfx.Contains(a) {
				return true
			}
		}
	}
	for _, l := range p.localAddrs() {
		if l == a {
			return true
		}
	}
	return false
}

// localAddrs are the gateway host's own addresses, refreshed every few
// seconds.
func (p *Proxy) localAddrs() []netip.Addr {
	p.localMu.Lock()
	defer p.localMu.Unlock()
	if time.Since(p.localTime) < 5*time.Second {
		return p.local
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return p.local
	}
	p.local = p.local[:0]
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				p.local = append(p.local, ip.Unmap())
			}
		}
	}
	p.localTime = time.Now()
	return p.local
}

// Interface guard.
var _ http.Handler = (*Proxy)(nil)
