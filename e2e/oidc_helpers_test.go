package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Helpers for the login tests: a gateway run with the repository's
// Caddyfile plus login subdirectives, a second instance sharing its
// storage, and walking OAuth redirects without a browser.

// authCaddyfile writes the repository's Caddyfile with block inserted at
// the top of its hubgate directive, and returns its path.
func authCaddyfile(t testing.TB, dir, block string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	at := slices.IndexFunc(lines, func(l string) bool { return strings.TrimSpace(l) == "hubgate {" })
	if at < 0 {
		t.Fatal("the repository's Caddyfile has no `hubgate {` line")
	}
	var ind []string
	for _, l := range strings.Split(strings.Trim(block, "\n"), "\n") {
		ind = append(ind, "\t\t"+l)
	}
	out := slices.Concat(lines[:at+1], ind, lines[at+1:])
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(strings.Join(out, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startAuthGateway is startGateway with login subdirectives added to the
// repository's Caddyfile.
func startAuthGateway(t testing.TB, opts gwOptions, block string) *gateway {
	t.Helper()
	g := newGateway(t, opts)
	g.runWith(authCaddyfile(t, g.dir, block))
	return g
}

// runWith is gateway.start with another config file.
func (g *gateway) runWith(config string) {
	g.t.Helper()
	g.config = config
	g.start()
}

// peer starts a second gateway instance with the same name, policy and
// Caddy storage (as instances behind a load balancer share them) and the
// same config.
func (g *gateway) peer() *gateway {
	g.t.Helper()
	p := &gateway{
		t:         g.t,
		dir:       g.t.TempDir(),
		name:      g.name,
		httpsPort: freePort(g.t),
		adminAddr: fmt.Sprintf("127.0.0.1:%d", freePort(g.t)),
	}
	if err := os.Symlink(filepath.Join(g.dir, "data"), filepath.Join(p.dir, "data")); err != nil {
		g.t.Fatal(err)
	}
	p.env = append(slices.Clone(g.env),
		"HUBGATE_HTTPS_PORT="+fmt.Sprint(p.httpsPort),
		"HUBGATE_HTTP_PORT="+fmt.Sprint(freePort(g.t)),
		"HUBGATE_ADMIN="+p.adminAddr,
		"XDG_DATA_HOME="+filepath.Join(p.dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(p.dir, "config"),
	)
	g.t.Cleanup(p.stop)
	p.runWith(filepath.Join(g.dir, "Caddyfile"))
	return p
}

// walk follows redirects from start (GET), across hosts, until the next
// URL satisfies stop; it returns that URL without requesting it, or fails
// the test when a page answers without redirecting there.
func walk(t testing.TB, c *http.Client, start string, stop func(*url.URL) bool) *url.URL {
	t.Helper()
	next, err := url.Parse(start)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 15; i++ {
		if stop(next) {
			return next
		}
		resp, err := c.Get(next.String())
		if err != nil {
			t.Fatalf("GET %s: %v", next, err)
		}
		body := readBody(t, resp)
		loc := resp.Header.Get("Location")
		if resp.StatusCode < 300 || resp.StatusCode > 399 || loc == "" {
			t.Fatalf("GET %s: %d without a redirect, before reaching the expected page\n%.1500s", next.Redacted(), resp.StatusCode, body)
		}
		if next, err = next.Parse(loc); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatalf("too many redirects from %s", start)
	return nil
}

func isCallback(u *url.URL) bool { return u.Path == "/hub/oauth_callback" }

var opAuthIDRE = regexp.MustCompile(`name="id" value="([^"]+)"`)

// opAuthorize starts a login at the gateway (start is a gateway path such
// as /hub/oauth_start/testop?next=...), logs user in through the OP's
// HTML form, and returns the gateway callback URL the OP redirects to,
// without requesting it.
func opAuthorize(t testing.TB, g *gateway, c *http.Client, start, user, password string) *url.URL {
	t.Helper()
	form := walk(t, c, g.url(start), func(u *url.URL) bool { return u.Path == "/login/username" })
	resp, err := c.Get(form.String())
	if err != nil {
		t.Fatal(err)
	}
	page := readBody(t, resp)
	m := opAuthIDRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the OP's login form has no auth request id:\n%s", page)
	}
	post, _ := form.Parse("/login/username")
	resp, err = c.PostForm(post.String(), url.Values{"id": {m[1]}, "username": {user}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("OP login of %s: %d, want 302", user, resp.StatusCode)
	}
	next, _ := post.Parse(resp.Header.Get("Location"))
	return walk(t, c, next.String(), isCallback)
}

// get sends a GET to an absolute URL and returns the response and body.
func getURL(t testing.TB, c *http.Client, u string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp, readBody(t, resp)
}

// logout logs the client's session out through the confirmation form and
// returns the POST's response.
func (g *gateway) logout(c *http.Client) *http.Response {
	g.t.Helper()
	_, page := g.get(c, "/hub/logout", "Accept", "text/html")
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		g.t.Fatalf("logout page has no CSRF token:\n%s", page)
	}
	resp, _ := g.do(c, http.MethodPost, "/hub/logout", strings.NewReader(url.Values{"csrf": {m[1]}}.Encode()), "Content-Type", "application/x-www-form-urlencoded")
	return resp
}

// withCookie returns a fresh client (no jar) that sends exactly this
// session cookie, like a copy taken from the browser.
func (g *gateway) withCookie(value string) *http.Client {
	return &http.Client{
		Transport: cookieTransport{rt: g.transport(), cookie: "__Host-hubgate-session=" + value},
		Timeout:   30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

type cookieTransport struct {
	rt     http.RoundTripper
	cookie string
}

func (c cookieTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Cookie", c.cookie)
	return c.rt.RoundTrip(r)
}

// envOf reads the test app's env endpoint (HUBGATE_*, JUPYTERHUB_* and
// GIT_* variables).
func (g *gateway) envOf(c *http.Client, user string) map[string]string {
	g.t.Helper()
	resp, body := g.getReady(c, "/user/"+user+"/notebook/env")
	if resp.StatusCode != http.StatusOK {
		g.t.Fatalf("env of %s: %d\n%s", user, resp.StatusCode, body)
	}
	var env map[string]string
	if err := jsonUnmarshal(body, &env); err != nil {
		g.t.Fatal(err)
	}
	return env
}

// containerEnv reads a user's container environment with docker inspect
// (the test app's env endpoint does not report GITHUB_TOKEN).
func (g *gateway) containerEnv(user string) map[string]string {
	g.t.Helper()
	ids := g.containers(user)
	if len(ids) != 1 {
		g.t.Fatalf("%s has %d containers, want 1", user, len(ids))
	}
	out := docker("inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", ids[0])
	env := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			env[k] = v
		}
	}
	return env
}

// verifyAssertion checks an identity assertion against the gateway's
// JWKS, fetched without a session, and returns its claims.
func (g *gateway) verifyAssertion(raw string) map[string]any {
	g.t.Helper()
	resp, body := g.get(g.client(), "/hub/.well-known/jwks.json")
	if resp.StatusCode != http.StatusOK {
		g.t.Fatalf("JWKS: %d %s", resp.StatusCode, body)
	}
	var set jose.JSONWebKeySet
	if err := jsonUnmarshal(body, &set); err != nil || len(set.Keys) != 1 {
		g.t.Fatalf("JWKS %s: %v", body, err)
	}
	if set.Keys[0].IsPublic() != true || set.Keys[0].Algorithm != "ES256" {
		g.t.Fatalf("JWKS key: %+v", set.Keys[0])
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		g.t.Fatalf("assertion does not parse: %v", err)
	}
	if tok.Headers[0].KeyID != set.Keys[0].KeyID {
		g.t.Fatalf("assertion kid %q, JWKS kid %q", tok.Headers[0].KeyID, set.Keys[0].KeyID)
	}
	var std jwt.Claims
	all := map[string]any{}
	if err := tok.Claims(set.Keys[0].Key, &std, &all); err != nil {
		g.t.Fatalf("assertion signature: %v", err)
	}
	if err := std.Validate(jwt.Expected{Issuer: g.url(""), Time: time.Now()}); err != nil {
		g.t.Fatalf("assertion claims: %v", err)
	}
	return all
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
