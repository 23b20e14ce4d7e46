package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The server_host tests serve the hub at hub.localhost and every server
// on a host of its own under *.hub.localhost, with on-demand certificates
// from Caddy's internal CA that hubgate's tls.permission.hubgate module
// allows. Chromium resolves *.localhost to loopback by itself; Go clients
// get a dialer that does.

const serverHostCaddyfile = `{
	skip_install_trust
	http_port {$HUBGATE_HTTP_PORT}
	https_port {$HUBGATE_HTTPS_PORT}
	admin {$HUBGATE_ADMIN}
	on_demand_tls {
		permission hubgate {$HUBGATE_NAME}
	}
}

hub.localhost, *.hub.localhost {
	tls internal {
		on_demand
	}
	hubgate {
		policy {$HUBGATE_POLICY}
		name {$HUBGATE_NAME}
		public_url https://hub.localhost:{$HUBGATE_HTTPS_PORT}
		server_host {server}--{user}.hub.localhost
		shares on
		start_wait 30s
		assertion
	}
}
`

// shGateway is a gateway serving server hosts.
type shGateway struct {
	*gateway
}

func startServerHostGateway(t *testing.T) *shGateway {
	t.Helper()
	g := newGateway(t, gwOptions{})
	g.config = filepath.Join(g.dir, "Caddyfile")
	if err := os.WriteFile(g.config, []byte(serverHostCaddyfile), 0o644); err != nil {
		t.Fatal(err)
	}
	sg := &shGateway{g}
	sg.start()
	return sg
}

// start is gateway.start with the health check on the hub's host.
func (g *shGateway) start() {
	g.t.Helper()
	g.logPath = filepath.Join(g.dir, "caddy.log")
	f, err := os.OpenFile(g.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		g.t.Fatal(err)
	}
	g.logFile = f
	g.cmd = execCaddy(g.gateway, "run", "--config", g.config, "--adapter", "caddyfile")
	g.cmd.Stdout, g.cmd.Stderr = f, f
	if err := g.cmd.Start(); err != nil {
		g.t.Fatalf("start caddy: %v", err)
	}
	exited := make(chan struct{})
	g.exited = exited
	go func(cmd interface{ Wait() error }) { _ = cmd.Wait(); close(exited) }(g.cmd)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			g.t.Fatalf("caddy exited during start\n%s", g.logTail())
		default:
		}
		if g.roots == nil {
			g.roots = loadRoots(filepath.Join(g.dir, "data", "caddy", "pki", "authorities", "local", "root.crt"))
		}
		if g.roots != nil {
			resp, err := g.hostClient(false).Get(g.hubURL("/hub/health"))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	g.t.Fatalf("caddy did not become ready\n%s", g.logTail())
}

func loadRoots(path string) *x509.CertPool {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil
	}
	return pool
}

func (g *shGateway) hubURL(path string) string {
	return fmt.Sprintf("https://hub.localhost:%d%s", g.httpsPort, path)
}

func (g *shGateway) serverURL(user, server, path string) string {
	return fmt.Sprintf("https://%s--%s.hub.localhost:%d/user/%s/%s/%s", server, user, g.httpsPort, user, server, path)
}

// hostClient is a client whose every host name resolves to the gateway
// on loopback, trusting the gateway's CA, with a cookie jar; follow says
// whether it follows redirects (the handshake is a chain of them).
func (g *shGateway) hostClient(follow bool) *http.Client {
	jar, _ := cookiejar.New(nil)
	port := fmt.Sprint(g.httpsPort)
	d := &net.Dialer{Timeout: 5 * time.Second}
	c := &http.Client{
		Jar: jar,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: g.roots},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
			},
		},
		Timeout: 60 * time.Second,
	}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c
}

// loginAt logs user in at the hub and returns a client that follows
// redirects (and the home page's CSRF token).
func (g *shGateway) loginAt(user string) (*http.Client, string) {
	g.t.Helper()
	c := g.hostClient(true)
	resp, err := c.Get(g.hubURL("/hub/login"))
	if err != nil {
		g.t.Fatal(err)
	}
	m := csrfRE.FindStringSubmatch(readBody(g.t, resp))
	if m == nil {
		g.t.Fatal("login page has no csrf field")
	}
	resp, err = c.PostForm(g.hubURL("/hub/login"), url.Values{"username": {user}, "password": {accounts[user]}, "csrf": {m[1]}, "next": {"/"}})
	if err != nil {
		g.t.Fatal(err)
	}
	body := readBody(g.t, resp)
	m = csrfRE.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		g.t.Fatalf("login %s: status %d\n%s", user, resp.StatusCode, body)
	}
	return c, m[1]
}

// open navigates c (as a browser would) to u, following the handshake.
func (g *shGateway) open(c *http.Client, u string, hdr ...string) (*http.Response, string) {
	g.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		g.t.Fatalf("GET %s: %v", u, err)
	}
	return resp, readBody(g.t, resp)
}

// whoamiHeaders reads the testapp's view of the request.
func whoamiHeaders(t *testing.T, body string) (appUser string, hdr http.Header) {
	t.Helper()
	var w struct {
		User    string      `json:"user"`
		Headers http.Header `json:"headers"`
	}
	if err := json.Unmarshal([]byte(body), &w); err != nil {
		t.Fatalf("not the app's whoami: %v\n%s", err, body)
	}
	return w.User, w.Headers
}

// assertionClaims decodes (without verifying: the JWKS test does that)
// the assertion's payload.
func assertionClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("assertion %q is not a JWT", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

var grantIDRE = regexp.MustCompile(`id="revoke-([A-Za-z0-9_-]+)"`)

func TestServerHostOriginsSharesAndRevocation(t *testing.T) {
	g := startServerHostGateway(t)
	alice, aliceCSRF := g.loginAt("alice")

	// The hub's /user/ path sends the browser to the server's own host.
	noFollow := g.hostClient(false)
	noFollow.Jar = alice.Jar
	resp, _ := g.open(noFollow, g.hubURL("/user/alice/notebook/whoami"))
	if want := g.serverURL("alice", "notebook", "whoami"); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
		t.Fatalf("hub /user/ answered %d Location %q, want 302 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	// The handshake: server host -> hub /hub/authorize -> callback -> app.
	resp, body := g.open(alice, g.serverURL("alice", "notebook", "whoami"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("alice's own server: %d\n%s\n%s", resp.StatusCode, body, g.logTail())
	}
	if u, hdr := whoamiHeaders(t, body); u != "alice" || hdr.Get("X-Hubgate-User") != "alice" || hdr.Get("X-Hubgate-Owner") != "" {
		t.Fatalf("app of %q saw user %q owner %q", u, hdr.Get("X-Hubgate-User"), hdr.Get("X-Hubgate-Owner"))
	}
	// The server host's cookie is its own; the hub's never went there.
	srvURL, _ := url.Parse(g.serverURL("alice", "notebook", ""))
	for _, ck := range alice.Jar.Cookies(srvURL) {
		if ck.Name == "__Host-hubgate-session" {
			t.Fatal("the hub's session cookie is sent to the server host")
		}
	}
	// A forged callback fails (codes good once, bound to host and state:
	// web.TestServerHostHandshake).
	if resp, _ := g.open(alice, fmt.Sprintf("https://notebook--alice.hub.localhost:%d/hub/server-callback?code=x", g.httpsPort)); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a forged callback answered %d", resp.StatusCode)
	}

	// bob is refused alice's server before a share, at the hub's authorize.
	bob, _ := g.loginAt("bob")
	if resp, body := g.open(bob, g.serverURL("alice", "notebook", "whoami")); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "not shared with you") {
		t.Fatalf("bob before the share: %d\n%s", resp.StatusCode, body)
	}
	// An admin without an access grant is refused too.
	admin, adminCSRF := g.loginAt("admin")
	if resp, body := g.open(admin, g.serverURL("alice", "notebook", "whoami")); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "access grant") {
		t.Fatalf("admin without a grant: %d\n%s", resp.StatusCode, body)
	}

	// Shares need the home page's CSRF token.
	resp, err := alice.PostForm(g.hubURL("/hub/shares"), url.Values{"action": {"create"}, "server": {"notebook"}, "users": {"bob"}})
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a share without the CSRF token answered %d", resp.StatusCode)
	}

	// bob in Chromium: his own server first (so he holds its cookie).
	ctx := newBrowser(t)
	navigate(t, ctx, g.hubURL("/hub/login"))
	waitVisible(t, ctx, g.hubURL("/hub/login"), chromedp.ID("username"), 20*time.Second)
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("username"), "bob"),
		chromedp.SendKeys(chromedp.ID("password"), accounts["bob"]),
		chromedp.Click(chromedp.ID("login")),
	); err != nil {
		t.Fatalf("log in: %v", err)
	}
	waitVisible(t, ctx, g.hubURL("/"), chromedp.ID("open-notebook"), 20*time.Second)
	navigate(t, ctx, g.serverURL("bob", "notebook", "html"))
	waitVisible(t, ctx, g.serverURL("bob", "notebook", "html"), chromedp.ID("who"), 60*time.Second)
	if who, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("who"))); err != nil || who != "hello bob" {
		t.Fatalf("bob's server says %q (%v)", who, err)
	}

	// alice shares with bob from her home page's form.
	resp, err = alice.PostForm(g.hubURL("/hub/shares"), url.Values{"csrf": {aliceCSRF}, "action": {"create"}, "server": {"notebook"}, "users": {"bob"}, "expires_in": {"8h"}})
	if err != nil {
		t.Fatal(err)
	}
	home := readBody(t, resp)
	m := grantIDRE.FindStringSubmatch(home)
	if resp.StatusCode != http.StatusOK || m == nil || !strings.Contains(home, "shared with bob") {
		t.Fatalf("sharing: %d\n%s", resp.StatusCode, home)
	}
	shareID := m[1]
	if !g.waitLog(`"share granted"`, 5*time.Second) {
		t.Fatal("the share is not in the audit log")
	}

	// bob finds it on his home page and opens it.
	navigate(t, ctx, g.hubURL("/"))
	waitVisible(t, ctx, g.hubURL("/"), chromedp.ID("open-shared-alice-notebook"), 20*time.Second)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("open-shared-alice-notebook"))); err != nil {
		t.Fatal(err)
	}
	var seen string
	eventually(t, 30*time.Second, "bob reaches alice's server from his home page", func() bool {
		seen, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		return strings.Contains(seen, `"X-Hubgate-Owner"`)
	})
	u, hdr := whoamiHeaders(t, seen)
	if u != "alice" || hdr.Get("X-Hubgate-User") != "bob" || hdr.Get("X-Hubgate-Owner") != "alice" || hdr.Get("X-Hubgate-Access") != "guest" {
		t.Fatalf("alice's app saw user %q owner %q access %q (app of %q)", hdr.Get("X-Hubgate-User"), hdr.Get("X-Hubgate-Owner"), hdr.Get("X-Hubgate-Access"), u)
	}
	claims := assertionClaims(t, hdr.Get("X-Hubgate-Assertion"))
	acc, _ := claims["access"].(map[string]any)
	if claims["sub"] != "bob" || acc["owner"] != "alice" || acc["kind"] != "guest" || acc["grant"] != shareID {
		t.Fatalf("assertion claims %v", claims)
	}
	if !g.waitLog(`"share used"`, 5*time.Second) {
		t.Fatal("the share's use is not in the audit log")
	}

	// bob uses it: a page and a websocket of alice's server.
	navigate(t, ctx, g.serverURL("alice", "notebook", "html"))
	waitVisible(t, ctx, g.serverURL("alice", "notebook", "html"), chromedp.ID("who"), 30*time.Second)
	wsURL := strings.Replace(g.serverURL("alice", "notebook", "ws"), "https://", "wss://", 1)
	echo, err := chromedp.Run(ctx, chromedp.Evaluate[string](`new Promise((resolve, reject) => {
		window.wsClosed = false;
		const ws = new WebSocket(`+"`"+wsURL+"`"+`);
		window.ws = ws;
		ws.onclose = () => { window.wsClosed = true; };
		ws.onerror = () => reject("websocket failed");
		ws.onopen = () => ws.send("hello from bob");
		ws.onmessage = (e) => resolve(e.data);
	})`, chromedp.EvalAwaitPromise))
	if err != nil || echo != "hello from bob" {
		t.Fatalf("websocket through the share: %q %v\n%s", echo, err, g.logTail())
	}

	// A script served by alice's server cannot read bob's own server nor
	// the hub: the browser refuses (CORS), and hubgate refuses it too.
	for _, target := range []string{g.serverURL("bob", "notebook", "whoami"), g.hubURL("/"), g.hubURL("/hub/api/shares")} {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`fetch(`+"`"+target+"`"+`, {credentials: "include"}).then(r => r.text().then(t => "read " + r.status + ": " + t)).catch(e => "refused: " + e)`, chromedp.EvalAwaitPromise))
		if err != nil || !strings.HasPrefix(got, "refused: ") {
			t.Fatalf("a script of alice's origin fetching %s got %q (%v)", target, got, err)
		}
	}
	if !g.waitLog(`"reason":"cross_origin_read"`, 5*time.Second) {
		t.Fatalf("hubgate did not refuse the cross-origin fetch of bob's server\n%s", g.logTail())
	}
	// The same request as a client holding bob's cookie for his server
	// host shows hubgate's answer.
	if resp, body := g.open(bob, g.serverURL("bob", "notebook", "whoami")); resp.StatusCode != http.StatusOK {
		t.Fatalf("bob's own server: %d\n%s", resp.StatusCode, body)
	}
	resp, _ = g.open(bob, g.serverURL("bob", "notebook", "whoami"), "Sec-Fetch-Site", "same-site", "Sec-Fetch-Mode", "cors", "Origin", fmt.Sprintf("https://notebook--alice.hub.localhost:%d", g.httpsPort))
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("hubgate answered a cross-origin read of bob's server with %d", resp.StatusCode)
	}

	// alice revokes: bob's open websocket closes at once, his next
	// request is refused.
	resp, err = alice.PostForm(g.hubURL("/hub/shares"), url.Values{"csrf": {aliceCSRF}, "action": {"revoke"}, "id": {shareID}})
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	eventually(t, 5*time.Second, "bob's websocket closes when the share is revoked", func() bool {
		closed, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.wsClosed === true`))
		return closed
	})
	got, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch("whoami").then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil || got != http.StatusForbidden {
		t.Fatalf("bob's request after the revocation: %d %v", got, err)
	}
	if !g.waitLog(`"share revoked"`, 5*time.Second) || !strings.Contains(g.logs(), `"streams_closed":1`) {
		t.Fatalf("the revocation (and its closed stream) is not in the audit log\n%s", g.logTail())
	}

	// Admin access: a reason is required; with one, the admin gets in for
	// the stated time and alice's home page shows who, when, why, until.
	resp, err = admin.PostForm(g.hubURL("/hub/admin/access"), url.Values{"csrf": {adminCSRF}, "action": {"create"}, "user": {"alice"}, "server": {"notebook"}})
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "reason is required") {
		t.Fatalf("admin access without a reason: %d\n%s", resp.StatusCode, body)
	}
	resp, err = admin.PostForm(g.hubURL("/hub/admin/access"), url.Values{"csrf": {adminCSRF}, "action": {"create"}, "user": {"alice"}, "server": {"notebook"}, "reason": {"ticket 42: kernel will not start"}})
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(body, "ticket 42") {
		t.Fatalf("admin access: %d\n%s", resp.StatusCode, body)
	}
	resp, body = g.open(admin, g.serverURL("alice", "notebook", "whoami"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin with a grant: %d\n%s", resp.StatusCode, body)
	}
	if _, hdr := whoamiHeaders(t, body); hdr.Get("X-Hubgate-User") != "admin" || hdr.Get("X-Hubgate-Access") != "admin" {
		t.Fatalf("app saw user %q access %q", hdr.Get("X-Hubgate-User"), hdr.Get("X-Hubgate-Access"))
	} else if c := assertionClaims(t, hdr.Get("X-Hubgate-Assertion")); c["access"].(map[string]any)["reason"] != "ticket 42: kernel will not start" {
		t.Fatalf("assertion claims %v", c)
	}
	resp, home = g.open(alice, g.hubURL("/"))
	if resp.StatusCode != http.StatusOK || !strings.Contains(home, `id="admin-access"`) || !strings.Contains(home, "ticket 42: kernel will not start") || !strings.Contains(home, "<td>admin</td>") {
		t.Fatalf("alice's home page does not show the admin's access:\n%s", home)
	}
	if !g.waitLog(`"admin access granted"`, 5*time.Second) || !g.waitLog(`"admin access used"`, 5*time.Second) {
		t.Fatal("the admin access is not in the audit log")
	}
	// The admin page lists it.
	if resp, body := g.open(admin, g.hubURL("/hub/admin")); resp.StatusCode != http.StatusOK || !strings.Contains(body, `data-kind="admin" data-owner="alice"`) {
		t.Fatalf("the admin page does not list the grant: %d", resp.StatusCode)
	}
}
