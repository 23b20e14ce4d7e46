package caddymodule

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/spawner"
)

// varRoute is the request variable through which the handler hands the
// chosen route to the embedded reverse proxy's upstream source.
const varRoute = "hubgate.route"

// provisionProxy builds the embedded Caddy reverse proxy: streaming,
// websockets, flushing and header handling are Caddy's own.
func (h *Handler) provisionProxy(ctx caddy.Context) error {
	transport := &reverseproxy.HTTPTransport{
		DialTimeout: caddy.Duration(5 * time.Second),
		KeepAlive: &reverseproxy.KeepAlive{
			MaxIdleConnsPerHost: h.MaxIdleConnsPerHost,
		},
	}
	if err := transport.Provision(ctx); err != nil {
		return fmt.Errorf("provision proxy transport: %w", err)
	}
	h.proxy = &reverseproxy.Handler{
		Transport:        transport,
		DynamicUpstreams: upstreamSource{},
		// Flush every write at once: notebooks, terminals and
		// RStudio's long polls must not wait in a buffer.
		FlushInterval: caddy.Duration(-1),
	}
	if err := h.proxy.Provision(ctx); err != nil {
		return fmt.Errorf("provision reverse proxy: %w", err)
	}
	return nil
}

// upstreamSource gives the reverse proxy the route chosen for the request.
type upstreamSource struct{}

// GetUpstreams implements reverseproxy.UpstreamSource.
func (upstreamSource) GetUpstreams(r *http.Request) ([]*reverseproxy.Upstream, error) {
	if rt, ok := caddyhttp.GetVar(r.Context(), varRoute).(*route); ok && rt != nil {
		return rt.upstreams, nil
	}
	return nil, errors.New("no hubgate route for this request")
}

// userPath is a parsed /user/{name}/{server}/... path.
type userPath struct {
	name, server, tail string
}

// parseUserPath reads the user and server from the cleaned, decoded path,
// so "..", "%2e%2e", "//" and encoded slashes all resolve to the server
// they really name before any check. canonical is false when the request's
// own spelling differs from the canonical prefix (it is then redirected or
// refused, never proxied).
func parseUserPath(r *http.Request) (up userPath, canonical, ok bool) {
	decoded := r.URL.Path
	cleaned := path.Clean(decoded)
	if strings.HasSuffix(decoded, "/") && cleaned != "/" {
		cleaned += "/"
	}
	rest, found := strings.CutPrefix(cleaned, "/user/")
	if !found {
		return up, false, false
	}
	parts := strings.SplitN(rest, "/", 3)
	if parts[0] == "" {
		return up, false, false
	}
	up.name = parts[0]
	if len(parts) < 2 || parts[1] == "" {
		return up, false, true
	}
	up.server = parts[1]
	if len(parts) == 3 {
		up.tail = parts[2]
	}
	canonical = cleaned == decoded &&
		up.name == policies.NormalizeUser(up.name) &&
		strings.HasPrefix(r.URL.EscapedPath(), userPrefix(up.name, up.server))
	return up, canonical, true
}

// serveUser authorizes a request for a user's server and proxies it,
// starting the server first when it is not running.
func (h *Handler) serveUser(w http.ResponseWriter, r *http.Request) error {
	s := h.currentSession(r)
	if s == nil {
		return h.needLogin(w, r)
	}
	setUserPlaceholders(r, s)
	up, canonical, ok := parseUserPath(r)
	if !ok {
		return h.refuse(w, r, http.StatusNotFound, "There is no server at this address.", "bad_path", zap.String("user", s.User))
	}
	if policies.NormalizeUser(up.name) != s.User {
		return h.refuse(w, r, http.StatusForbidden, "This is another user's server.", "other_user",
			zap.String("user", s.User), zap.String("target_user", up.name))
	}
	pol := h.watcher.Current()
	if !pol.Known(s.User, s.Groups) {
		return h.refuse(w, r, http.StatusForbidden, "Your account is not in this hub's policy. Ask an admin to add you.", "not_in_policy", zap.String("user", s.User))
	}
	if up.server == "" {
		http.Redirect(w, r, "/", http.StatusFound)
		return nil
	}
	img := pol.Images[up.server]
	if img == nil {
		return h.refuse(w, r, http.StatusNotFound, fmt.Sprintf("There is no server called %q.", up.server), "unknown_server",
			zap.String("user", s.User), zap.String("server", up.server))
	}
	if !pol.Allowed(s.User, s.Groups, up.server) {
		return h.refuse(w, r, http.StatusForbidden, fmt.Sprintf("Your teams do not allow the server %q.", up.server), "image_not_allowed",
			zap.String("user", s.User), zap.String("server", up.server))
	}
	if !canonical {
		prefix := userPrefix(s.User, up.server)
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.Header.Get("Upgrade") == "" {
			target := prefix + (&url.URL{Path: up.tail}).EscapedPath()
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, target, http.StatusMovedPermanently)
			return nil
		}
		return h.refuse(w, r, http.StatusBadRequest, "Use the canonical address "+prefix, "non_canonical_path", zap.String("user", s.User))
	}

	if crossOrigin(r) {
		return h.refuse(w, r, http.StatusForbidden, "Refused: this request came from another site.", "cross_origin",
			zap.String("user", s.User), zap.String("server", up.server), zap.String("origin", r.Header.Get("Origin")))
	}

	key := routeKey(s.User, up.server)
	rt, ok := h.hub.lookup(key)
	if !ok && h.hub.awaitWarm(r.Context(), 2*time.Second) {
		// Just after a gateway start the listing of running servers may
		// still be on its way; it is cheaper to wait for it than to go
		// down the start path for a server that is running.
		rt, ok = h.hub.lookup(key)
	}
	if !ok {
		started, responded, err := h.awaitStart(w, r, s, key, up.server, img, pol.Grant(s.User, s.Groups))
		if responded || err != nil {
			return err
		}
		rt = started
	}
	err := h.proxyTo(w, r, s, rt)
	if err != nil && ok && retryable(r, err) {
		// The cached server is gone (it died or was removed): start it
		// again for this very request, with the same volume.
		started, responded, err := h.awaitStart(w, r, s, key, up.server, img, pol.Grant(s.User, s.Groups))
		if responded || err != nil {
			return err
		}
		return h.proxyTo(w, r, s, started)
	}
	return err
}

// crossOrigin reports a browser request from another site that would
// change state or open a websocket. Apps behind hubgate trust the
// container secret the gateway adds to every request, so they skip their
// own origin and XSRF checks (Jupyter does); the gateway makes that check
// for them. Sibling subdomains count as other sites: SameSite cookies do
// not keep those out. Requests without Origin and Sec-Fetch-Site (API
// clients, curl) are not browsers' cross-site requests and pass.
func crossOrigin(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		if r.Header.Get("Upgrade") == "" {
			return false
		}
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
			return true
		}
		if r.TLS != nil && u.Scheme != "https" {
			return true
		}
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return false
	}
	return true
}

// retryable reports a failed proxy attempt that may be made again: a safe
// method, no upgrade, and a gateway error (nothing was written yet).
func retryable(r *http.Request, err error) bool {
	if (r.Method != http.MethodGet && r.Method != http.MethodHead) || r.Header.Get("Upgrade") != "" {
		return false
	}
	var he caddyhttp.HandlerError
	return errors.As(err, &he) && he.StatusCode == http.StatusBadGateway
}

// proxyTo sends the request to the user's container: identity headers a
// client may have sent are removed, hubgate's cookies are not forwarded,
// and the container secret is added.
func (h *Handler) proxyTo(w http.ResponseWriter, r *http.Request, s *session.Session, rt *route) error {
	stripIdentityHeaders(r.Header)
	stripOurCookies(r.Header)
	r.Header.Set("Authorization", rt.auth)
	r.Header.Set("X-Hubgate-User", s.User)
	h.setAssertion(r, s, rt.server)
	rt.lastActivity.Store(time.Now().UnixNano())
	caddyhttp.SetVar(r.Context(), varRoute, rt)
	if r.Header.Get("Upgrade") != "" {
		// A websocket: track it so that logout can close it, and count
		// its traffic as activity.
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		defer h.hub.streams.add(s.ID, s.User, s.Groups, rt.server, cancel)()
		r = r.WithContext(ctx)
		w = &activityWriter{ResponseWriter: w, rt: rt}
	}
	err := h.proxy.ServeHTTP(w, r, nil)
	if err != nil {
		var he caddyhttp.HandlerError
		if errors.As(err, &he) && (he.StatusCode == http.StatusBadGateway || he.StatusCode == http.StatusServiceUnavailable || he.StatusCode == http.StatusGatewayTimeout) {
			// The container may be gone; the next request looks again.
			h.hub.forget(rt)
			h.logger.Warn("proxy to user server failed; route dropped",
				zap.String("user", rt.user), zap.String("server", rt.server), zap.String("container_id", shortID(rt.inst.ID)), zap.Error(err))
		}
	}
	return err
}

// awaitStart begins (or joins) the start of a server and waits up to
// StartWait for it. It returns the route when the server is ready; when it
// is not, it has written the progress page or a 503 and responded is true.
func (h *Handler) awaitStart(w http.ResponseWriter, r *http.Request, s *session.Session, key, server string, img *policies.Image, grant policies.Grant) (*route, bool, error) {
	h.hub.markSeen(s.User)
	st := h.hub.begin(key, time.Duration(h.StartTimeout), func(ctx context.Context) (*route, error) {
		return h.spawn(ctx, s, server, img, grant)
	})
	timer := time.NewTimer(time.Duration(h.StartWait))
	defer timer.Stop()
	select {
	case <-st.done:
	case <-timer.C:
	case <-r.Context().Done():
		return nil, true, nil
	}
	select {
	case <-st.done:
		if st.err == nil {
			return st.route, false, nil
		}
		h.hub.dismiss(key, st)
		return nil, true, h.startFailed(w, r, s, server, img, st.err)
	default:
	}
	elapsed := time.Since(st.began).Round(time.Second)
	if wantsHTML(r) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Refresh", "1")
		return nil, true, h.pages.render(w, http.StatusAccepted, "progress", pageData{
			Title: "Starting " + server, User: s.User, CSRF: h.csrfToken(s),
			Server: server, Description: img.Description, Elapsed: elapsed.String(), Refresh: 1,
			Position: h.hub.position(st),
		})
	}
	w.Header().Set("Retry-After", "2")
	return nil, true, writeJSON(w, http.StatusServiceUnavailable, map[string]any{
		"status": "starting", "server": server, "retry_after": 2, "elapsed_seconds": int(elapsed.Seconds()),
		"queue_position": h.hub.position(st),
	})
}

// startFailed tells the user why their server did not start.
func (h *Handler) startFailed(w http.ResponseWriter, r *http.Request, s *session.Session, server string, img *policies.Image, err error) error {
	msg := "Your server could not start. The admins can see why in the gateway's log."
	status := http.StatusBadGateway
	switch {
	case isEngineDown(err):
		msg = "The container engine cannot be reached right now. Try again in a minute."
		status = http.StatusServiceUnavailable
	case errors.Is(err, spawner.ErrImageMissing):
		msg = fmt.Sprintf("The image %q of server %q is not available on this machine. Ask an admin to build or load it.", img.Image, server)
		status = http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		msg = fmt.Sprintf("Your server %q did not become ready within %s and was stopped. Try again, or ask an admin.", server, time.Duration(h.StartTimeout))
		status = http.StatusGatewayTimeout
	case errors.Is(err, errContainerExited), errors.Is(err, errContainerGone):
		msg = fmt.Sprintf("Your server %q stopped while starting. Try again, or ask an admin to look at its log.", server)
	}
	if wantsHTML(r) {
		return h.pages.render(w, status, "error", pageData{
			Title: "Server did not start", User: s.User, CSRF: h.csrfToken(s), Message: msg, Retry: userPrefix(s.User, server),
		})
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "10")
	}
	return writeJSON(w, status, map[string]any{"status": "failed", "server": server, "error": msg})
}

func isEngineDown(err error) bool {
	return errors.Is(err, spawner.ErrUnavailable)
}

// spawn starts the user's server and waits until the app answers.
func (h *Handler) spawn(ctx context.Context, s *session.Session, server string, img *policies.Image, grant policies.Grant) (_ *route, err error) {
	began := time.Now()
	defer func() {
		result := "ok"
		if err != nil {
			result = "error"
		}
		metrics.spawnDuration.WithLabelValues(result).Observe(time.Since(began).Seconds())
	}()
	nonce := randomHex(16)
	prefix := userPrefix(s.User, server)
	env := make(map[string]string, len(img.Env)+8)
	for k, v := range img.Env {
		env[k] = v
	}
	env["HUBGATE_USER"] = s.User
	env["HUBGATE_SERVER"] = server
	env["HUBGATE_BASE_URL"] = prefix
	env["HUBGATE_DEFAULT_URL"] = img.URL
	env["JUPYTERHUB_SERVICE_PREFIX"] = prefix
	env["HUBGATE_TOKEN"] = containerToken(h.codec, nonce)
	// The image's entrypoint syncs the team's repos before the app starts;
	// it must give up well within the start timeout.
	env["HUBGATE_SYNC_TIMEOUT"] = max(time.Duration(h.StartTimeout)-30*time.Second, 10*time.Second).String()
	// The git identity always; repos and the GitHub token only where the
	// policy grants them (see oauth.go).
	h.identityEnv(ctx, s, grant, env)
	spec := spawner.Spec{
		User:      s.User,
		Server:    server,
		Image:     img.Image,
		Port:      img.Port,
		Cmd:       img.Command,
		Env:       env,
		HomeMount: img.Home,
		Nonce:     nonce,
		Meta: map[string]string{
			metaIdleTimeout: strconv.FormatFloat(grant.IdleTimeout.Seconds(), 'f', -1, 64),
			metaMaxAge:      strconv.FormatFloat(grant.MaxAge.Seconds(), 'f', -1, 64),
			metaMemory:      strconv.FormatInt(grant.Limits.Memory, 10),
			metaCPUs:        strconv.FormatFloat(grant.Limits.CPUs, 'f', -1, 64),
		},
		Limits: spawner.Limits{
			MemoryBytes: grant.Limits.Memory,
			NanoCPUs:    int64(grant.Limits.CPUs * 1e9),
			Pids:        grant.Limits.Pids,
		},
	}
	fields := []zap.Field{zap.String("user", s.User), zap.String("server", server), zap.String("image", img.Image)}
	inst, err := h.hub.spawner.Ensure(ctx, spec)
	if err != nil {
		h.audit.Error("spawn failed", append(fields, zap.String("reason", "create"), zap.Error(err))...)
		return nil, fmt.Errorf("start container for %s/%s: %w", s.User, server, err)
	}
	rt := newRoute(inst, h.codec)
	if err := h.hub.waitReady(ctx, rt, prefix); err != nil {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		logs, lerr := h.hub.spawner.Logs(lctx, s.User, server, 50)
		if lerr != nil {
			logs = "(logs unavailable: " + lerr.Error() + ")"
		}
		h.audit.Error("spawn failed", append(fields, zap.String("reason", "not_ready"), zap.String("container_id", shortID(inst.ID)),
			zap.Error(err), zap.String("container_output", logs))...)
		if errors.Is(err, context.DeadlineExceeded) {
			if serr := h.hub.spawner.Stop(lctx, s.User, server); serr != nil && !errors.Is(serr, spawner.ErrNotFound) {
				h.logger.Error("stopping a server that did not start failed", append(fields, zap.Error(serr))...)
			}
		}
		return nil, fmt.Errorf("wait for %s/%s: %w", s.User, server, err)
	}
	h.audit.Info("spawn", append(fields, zap.String("container_id", shortID(inst.ID)), zap.Duration("duration", time.Since(began)))...)
	return rt, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// identityHeader reports request headers that claim an identity; only the
// gateway may set those. The name is compared case-insensitively and with
// underscores read as dashes, since some servers treat them alike. It
// allocates nothing: it runs for every header of every proxied request.
func identityHeader(name string) bool {
	var buf [64]byte
	if len(name) > len(buf) {
		return identityHeaderSlow(name)
	}
	n := buf[:len(name)]
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		n[i] = c
	}
	return isIdentityName(n)
}

func identityHeaderSlow(name string) bool {
	return isIdentityName([]byte(strings.ToLower(strings.ReplaceAll(name, "_", "-"))))
}

func isIdentityName(n []byte) bool {
	switch string(n) { // no allocation: the compiler compares in place
	case "authorization", "proxy-authorization", "x-forwarded-user", "x-forwarded-email",
		"x-forwarded-groups", "x-forwarded-preferred-username", "x-forwarded-access-token",
		"x-user", "x-email", "x-webauth-user", "x-remote-user", "x-remote-group", "x-remote-groups":
		return true
	}
	return bytes.HasPrefix(n, []byte("x-hubgate-")) || bytes.HasPrefix(n, []byte("remote-")) ||
		bytes.HasPrefix(n, []byte("x-auth-request-")) || bytes.HasPrefix(n, []byte("x-jupyterhub-"))
}

func stripIdentityHeaders(hdr http.Header) {
	for k := range hdr {
		if identityHeader(k) {
			delete(hdr, k)
		}
	}
}

// stripOurCookies removes hubgate's cookies from the Cookie header, keeping
// the app's own cookies (Jupyter's _xsrf, RStudio's) untouched.
func stripOurCookies(hdr http.Header) {
	lines := hdr["Cookie"]
	if len(lines) == 0 {
		return
	}
	if len(lines) == 1 && !strings.Contains(lines[0], cookiePrefix) {
		return // nothing of ours: keep the header as it is
	}
	var kept []string
	changed := false
	for _, line := range lines {
		for _, part := range strings.Split(line, ";") {
			p := strings.TrimSpace(part)
			if p == "" {
				continue
			}
			name, _, _ := strings.Cut(p, "=")
			if strings.HasPrefix(strings.TrimSpace(name), cookiePrefix) {
				changed = true
				continue
			}
			kept = append(kept, p)
		}
	}
	if !changed && len(lines) == 1 {
		return
	}
	if len(kept) == 0 {
		hdr.Del("Cookie")
		return
	}
	hdr.Set("Cookie", strings.Join(kept, "; "))
}
