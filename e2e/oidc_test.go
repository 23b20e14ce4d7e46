package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"github.com/hubgate/hubgate/caddymodule/session"
)

// oidcBlock is what the OIDC tests add to the repository's Caddyfile.
const oidcBlock = `
oidc testop {
	issuer {$HUBGATE_OIDC_ISSUER}
	client_id {$HUBGATE_OIDC_CLIENT_ID}
	client_secret {env.HUBGATE_OIDC_CLIENT_SECRET}
	scopes openid profile email groups
	label "Log in with the test OP"
}
assertion {
	header X-Hubgate-Assertion
	ttl 60s
}
`

// oidcPolicy lets members of the OP's "researchers" group in.
const oidcPolicy = basePolicy + `  oidc-research:
    groups: ["oidc:researchers"]
    images: [notebook]
`

func oidcEnv(o *testOP) map[string]string {
	return map[string]string{
		"HUBGATE_OIDC_ISSUER":        o.issuer,
		"HUBGATE_OIDC_CLIENT_ID":     opClientID,
		"HUBGATE_OIDC_CLIENT_SECRET": opClientSecret,
		"HUBGATE_START_WAIT":         "1ms",
	}
}

func startOIDCGateway(t *testing.T) (*testOP, *gateway) {
	t.Helper()
	o := startOP(t)
	g := startAuthGateway(t, gwOptions{policy: oidcPolicy, env: oidcEnv(o)}, oidcBlock)
	o.allow(g)
	return o, g
}

func oidcPassword(user string) string {
	for _, u := range oidcUsers {
		if u.username == user || u.email == user {
			return u.password
		}
	}
	return ""
}

// oidcLogin logs user in at the OP and completes the callback; it returns
// the callback's response.
func oidcLogin(t *testing.T, g *gateway, c *http.Client, user, next string) *http.Response {
	t.Helper()
	cb := opAuthorize(t, g, c, "/hub/oauth_start/testop?next="+url.QueryEscape(next), user, oidcPassword(user))
	resp, _ := getURL(t, c, cb.String())
	return resp
}

func TestOIDCLoginGroupsIdentityAndAssertion(t *testing.T) {
	o, g := startOIDCGateway(t)
	c := g.client()

	// The login page offers the provider and, still, the local form.
	resp, page := g.get(c, "/hub/login?next="+url.QueryEscape("/user/olivia/notebook/"), "Accept", "text/html")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `id="provider-testop"`) ||
		!strings.Contains(page, `href="/hub/oauth_start/testop?next=%2fuser%2folivia%2fnotebook%2f"`) && !strings.Contains(page, `href="/hub/oauth_start/testop?next=%2Fuser%2Folivia%2Fnotebook%2F"`) ||
		!strings.Contains(page, "Log in with the test OP") || !strings.Contains(page, `id="username"`) {
		t.Fatalf("login page: %d\n%s", resp.StatusCode, page)
	}

	// The authorization request carries state, nonce and a PKCE S256
	// challenge, never the verifier; the pre-login cookie is Lax so it
	// comes back with the provider's redirect.
	resp, _ = g.get(c, "/hub/oauth_start/testop?next=/user/olivia/notebook/")
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc.String(), o.issuer) {
		t.Fatalf("start: %d to %q", resp.StatusCode, loc)
	}
	q := loc.Query()
	for k, want := range map[string]string{"client_id": opClientID, "redirect_uri": g.url("/hub/oauth_callback"), "code_challenge_method": "S256", "response_type": "code"} {
		if q.Get(k) != want {
			t.Errorf("authorization request %s = %q, want %q", k, q.Get(k), want)
		}
	}
	for _, k := range []string{"state", "nonce", "code_challenge"} {
		if len(q.Get(k)) < 22 {
			t.Errorf("authorization request %s = %q, want a random value", k, q.Get(k))
		}
	}
	if q.Has("code_verifier") {
		t.Error("the PKCE verifier is in the authorization URL")
	}
	var pre string
	for _, sc := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(sc, "__Host-hubgate-oauth=") {
			pre = sc
		}
	}
	for _, attr := range []string{"Path=/", "Max-Age=600", "HttpOnly", "Secure", "SameSite=Lax"} {
		if !strings.Contains(pre, attr) {
			t.Errorf("pre-login cookie %q lacks %s", pre, attr)
		}
	}

	// olivia logs in through the OP's form; her OP group lets her in.
	if resp := oidcLogin(t, g, c, "olivia", "/user/olivia/notebook/whoami"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/user/olivia/notebook/whoami" {
		t.Fatalf("olivia's callback: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if g.cookie(c, "__Host-hubgate-oauth") != nil {
		t.Error("the pre-login cookie was not cleared")
	}
	env := g.envOf(c, "olivia")
	for k, want := range map[string]string{"GIT_AUTHOR_NAME": "Olivia Okafor", "GIT_COMMITTER_NAME": "Olivia Okafor", "GIT_AUTHOR_EMAIL": "olivia@example.org", "GIT_COMMITTER_EMAIL": "olivia@example.org", "HUBGATE_USER": "olivia"} {
		if env[k] != want {
			t.Errorf("container %s = %q, want %q", k, env[k], want)
		}
	}
	if _, ok := env["HUBGATE_REPOS"]; ok {
		t.Errorf("HUBGATE_REPOS set without repos in the policy: %v", env)
	}
	if tok := g.containerEnv("olivia")["GITHUB_TOKEN"]; tok != "" {
		t.Error("an OIDC user's container got a GITHUB_TOKEN")
	}

	// The signed identity assertion: verified with the public JWKS.
	w := g.whoami(c, "olivia", "X-Hubgate-Assertion", "forged-by-client", "x-hubgate-assertion", "forged-too")
	got := w.Headers["X-Hubgate-Assertion"]
	if len(got) != 1 || strings.Contains(got[0], "forged") {
		t.Fatalf("assertion header reaching the app: %v", got)
	}
	claims := g.verifyAssertion(got[0])
	groups, _ := claims["groups"].([]any)
	if claims["sub"] != "olivia" || claims["aud"] != "notebook" || claims["name"] != "Olivia Okafor" || !slices.Contains(groups, any("oidc:researchers")) {
		t.Errorf("assertion claims: %v", claims)
	}
	if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat != 60 {
		t.Errorf("assertion lifetime %vs, want 60s", exp-iat)
	}

	// erin has no preferred_username: her verified email is her name.
	ce := g.client()
	if resp := oidcLogin(t, g, ce, "Erin@Example.org", "/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("erin's callback: %d", resp.StatusCode)
	}
	if resp, page := g.get(ce, "/", "Accept", "text/html"); resp.StatusCode != http.StatusOK || !strings.Contains(page, "erin@example.org") {
		t.Fatalf("erin's home page: %d\n%s", resp.StatusCode, page)
	}

	// oscar's OP group is not in the policy: logged in, but refused.
	co := g.client()
	if resp := oidcLogin(t, g, co, "oscar", "/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("oscar's callback: %d", resp.StatusCode)
	}
	if resp, _ := g.get(co, "/user/oscar/notebook/"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("oscar's server: %d, want 403", resp.StatusCode)
	}

	// The OP's "bob" is not the local account bob of the policy.
	cb := g.client()
	resp = oidcLogin(t, g, cb, "bob", "/")
	if resp.StatusCode != http.StatusForbidden || g.cookie(cb, "__Host-hubgate-session") != nil {
		t.Fatalf("OP user bob: %d, session %v; want 403 and no session", resp.StatusCode, g.cookie(cb, "__Host-hubgate-session"))
	}

	if !g.waitLog(`"msg":"login","user":"olivia"`, 5*time.Second) || !g.waitLog(`"provider":"testop"`, 0) {
		t.Error("no login audit line for olivia with her provider")
	}
	if !g.waitLog(`"reason":"name_is_local_account"`, 0) {
		t.Error("the refused login is not audited")
	}
	for _, secret := range []string{opClientSecret, oidcPassword("olivia")} {
		if strings.Contains(g.logs(), secret) {
			t.Errorf("a secret reached the log: %q", secret)
		}
	}
}

func TestOIDCStateNonceAndPKCE(t *testing.T) {
	o, g := startOIDCGateway(t)
	c := g.client()
	cb := opAuthorize(t, g, c, "/hub/oauth_start/testop?next=/user/olivia/notebook/", "olivia", oidcPassword("olivia"))
	pre := g.cookie(c, "__Host-hubgate-oauth")
	if pre == nil {
		t.Fatal("no pre-login cookie")
	}
	withPre := func() *http.Client {
		cl := g.client()
		cl.Transport = cookieTransport{rt: g.transport(), cookie: "__Host-hubgate-oauth=" + pre.Value}
		return cl
	}
	expect := func(name string, c *http.Client, u string, status int, reason string) {
		t.Helper()
		resp, body := getURL(t, c, u, "Accept", "text/html")
		if resp.StatusCode != status {
			t.Errorf("%s: %d, want %d\n%.400s", name, resp.StatusCode, status, body)
		}
		if strings.Contains(strings.Join(resp.Header.Values("Set-Cookie"), ";"), "__Host-hubgate-session=") && status != http.StatusSeeOther {
			t.Errorf("%s set a session", name)
		}
		if reason != "" && !g.waitLog(`"reason":"`+reason+`"`, 2*time.Second) {
			t.Errorf("%s: no audit line with reason %s", name, reason)
		}
	}
	with := func(k, v string) string {
		u := *cb
		q := u.Query()
		q.Set(k, v)
		u.RawQuery = q.Encode()
		return u.String()
	}

	// A wrong state, with the right pre-login cookie, is refused.
	expect("wrong state", withPre(), with("state", cb.Query().Get("state")+"x"), http.StatusBadRequest, "state_mismatch")
	// Without the pre-login cookie (another browser; no PKCE verifier, no
	// nonce) the right state is refused too.
	expect("no pre-login cookie", g.client(), cb.String(), http.StatusBadRequest, "no_login_state")
	// Oversized or repeated parameters are refused before anything else.
	expect("oversized code", withPre(), with("code", strings.Repeat("a", 5000)), http.StatusBadRequest, "oversized_callback")
	expect("oversized query", withPre(), cb.String()+"&pad="+strings.Repeat("b", 9000), http.StatusRequestURITooLong, "oversized_callback")
	expect("repeated state", withPre(), cb.String()+"&state=other", http.StatusBadRequest, "")
	// The real answer, once.
	expect("the real callback", withPre(), cb.String(), http.StatusSeeOther, "")
	// Replaying it, even with a copy of the pre-login cookie, is refused.
	expect("replayed state", withPre(), cb.String(), http.StatusBadRequest, "state_replayed")

	// A login older than 10 minutes is refused: a pre-login cookie
	// sealed with the gateway's own key, but expired.
	key, err := os.ReadFile(filepath.Join(g.dir, "data", "caddy", "hubgate", g.name, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(string(key)))
	codec, err := session.NewCodec(raw)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := codec.Seal(session.PurposeOAuth, map[string]any{"p": "testop", "s": "old-state", "n": "n", "v": strings.Repeat("v", 43),
		"r": g.url("/hub/oauth_callback"), "x": "/", "exp": time.Now().Add(-time.Second).Unix()})
	stale := g.client()
	stale.Transport = cookieTransport{rt: g.transport(), cookie: "__Host-hubgate-oauth=" + old}
	expect("expired login", stale, g.url("/hub/oauth_callback?code=abc&state=old-state"), http.StatusBadRequest, "login_state_expired")

	// The provider's error page: a clear page of ours, nothing echoed.
	c2 := g.client()
	resp, _ := g.get(c2, "/hub/oauth_start/testop?next=/")
	state, _ := url.Parse(resp.Header.Get("Location"))
	resp, body := g.get(c2, "/hub/oauth_callback?error=access_denied&error_description="+url.QueryEscape("<script>alert(1)</script>")+"&state="+url.QueryEscape(state.Query().Get("state")), "Accept", "text/html")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "cancelled or refused") || strings.Contains(body, "<script>alert") {
		t.Errorf("IdP error page: %d\n%s", resp.StatusCode, body)
	}
	if !g.waitLog(`"idp_error":"access_denied"`, 2*time.Second) {
		t.Error("the IdP error is not audited")
	}

	// PKCE is enforced by the OP: the code of a login, redeemed without
	// the verifier (or with a wrong one), is refused.
	c3 := g.client()
	cb3 := opAuthorize(t, g, c3, "/hub/oauth_start/testop", "olivia", oidcPassword("olivia"))
	tokenURL := discover(t, o)["token_endpoint"].(string)
	for name, verifier := range map[string]string{"missing verifier": "", "wrong verifier": strings.Repeat("v", 50)} {
		form := url.Values{"grant_type": {"authorization_code"}, "code": {cb3.Query().Get("code")}, "redirect_uri": {g.url("/hub/oauth_callback")}}
		if verifier != "" {
			form.Set("code_verifier", verifier)
		}
		req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(opClientID, opClientSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := readBody(t, resp)
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(body, "id_token") {
			t.Errorf("%s: the OP answered %d %s, want a refusal", name, resp.StatusCode, body)
		}
	}
	// With its verifier (in the pre-login cookie) the gateway redeems it.
	if resp, _ := getURL(t, c3, cb3.String()); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the gateway's own exchange: %d, want 303", resp.StatusCode)
	}
}

func discover(t *testing.T, o *testOP) map[string]any {
	t.Helper()
	resp, err := http.Get(o.issuer + ".well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(readBody(t, resp)), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestOIDCLogoutRevokesEverywhere(t *testing.T) {
	o, g := startOIDCGateway(t)
	c := g.client()
	if resp := oidcLogin(t, g, c, "olivia", "/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	g.whoami(c, "olivia")
	copied := g.cookie(c, "__Host-hubgate-session").Value
	p := g.peer()
	o.allow(p)

	// The copy works on both instances, websockets included.
	if resp, _ := getURL(t, p.withCookie(copied), p.url("/user/olivia/notebook/whoami")); resp.StatusCode != http.StatusOK {
		t.Fatalf("copied cookie on the peer before logout: %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dial := func(gw *gateway, cl *http.Client) *websocket.Conn {
		ws, _, err := websocket.Dial(ctx, "wss://localhost:"+strconv.Itoa(gw.httpsPort)+"/user/olivia/notebook/ws", &websocket.DialOptions{HTTPClient: cl})
		if err != nil {
			t.Fatalf("websocket through %d: %v", gw.httpsPort, err)
		}
		if err := ws.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, msg, err := ws.Read(ctx); err != nil || string(msg) != "ping" {
			t.Fatalf("echo: %q %v", msg, err)
		}
		return ws
	}
	wsHere := dial(g, c)
	wsPeer := dial(p, p.withCookie(copied))

	// Logging out continues at the OP's end_session_endpoint with the ID
	// token as hint, and comes back to /.
	resp := g.logout(c)
	end, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(end.String(), o.issuer) {
		t.Fatalf("logout: %d to %q, want the OP's end session endpoint", resp.StatusCode, end)
	}
	if q := end.Query(); q.Get("id_token_hint") == "" || q.Get("post_logout_redirect_uri") != g.url("/") || q.Get("client_id") != opClientID {
		t.Errorf("end session request: %v", q)
	}
	if g.cookie(c, "__Host-hubgate-session") != nil || g.cookie(c, "__Host-hubgate-idt") != nil {
		t.Error("logout left cookies behind")
	}

	// Both websockets are closed: here at once, on the peer when it reads
	// the revocation from storage.
	for name, ws := range map[string]*websocket.Conn{"here": wsHere, "peer": wsPeer} {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		_, _, err := ws.Read(rctx)
		if err == nil || rctx.Err() != nil {
			t.Errorf("websocket %s still open after logout (%v)", name, err)
		}
		rcancel()
		ws.CloseNow()
	}
	// The copy taken before the logout is refused on both instances.
	if resp, _ := getURL(t, g.withCookie(copied), g.url("/user/olivia/notebook/whoami")); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("copied cookie after logout: %d, want 401", resp.StatusCode)
	}
	eventually(t, 10*time.Second, "the peer refuses the revoked session", func() bool {
		resp, _ := getURL(t, p.withCookie(copied), p.url("/user/olivia/notebook/whoami"))
		return resp.StatusCode == http.StatusUnauthorized
	})

	// The OP ends its session and sends the browser back to /.
	back := walk(t, c, end.String(), func(u *url.URL) bool { return u.Host == "localhost:"+strconv.Itoa(g.httpsPort) })
	if back.Path != "/" {
		t.Errorf("after the OP's logout: %s, want /", back)
	}

	// A restarted peer still refuses it: the record is in storage.
	p.stop()
	p.runWith(g.dir + "/Caddyfile")
	if resp, _ := getURL(t, p.withCookie(copied), p.url("/")); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("copied cookie on the restarted peer: %d, want 401", resp.StatusCode)
	}
	if !g.waitLog(`"msg":"logout"`, 0) || !g.waitLog(`"msg":"session revoked"`, 0) {
		t.Error("logout and revocation are not audited")
	}
	if !p.waitLog(`"msg":"revoked session's streams closed"`, 0) {
		t.Error("the peer did not report closing the revoked session's websocket")
	}
}

func TestOIDCProviderDownDoesNotStopStartup(t *testing.T) {
	env := map[string]string{
		"HUBGATE_OIDC_ISSUER":        "http://127.0.0.1:" + strconv.Itoa(freePort(t)) + "/",
		"HUBGATE_OIDC_CLIENT_ID":     "x",
		"HUBGATE_OIDC_CLIENT_SECRET": "y",
	}
	began := time.Now()
	g := startAuthGateway(t, gwOptions{env: env}, oidcBlock)
	if d := time.Since(began); d > 15*time.Second {
		t.Errorf("start took %s with the provider down", d)
	}
	resp, body := g.get(g.client(), "/hub/oauth_start/testop", "Accept", "text/html")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "cannot be reached") {
		t.Fatalf("login with the provider down: %d\n%s", resp.StatusCode, body)
	}
	// Local accounts still work.
	g.login("alice")
}

func TestOIDCBrowserLoginAndLogout(t *testing.T) {
	o, g := startOIDCGateway(t)
	ctx := newBrowser(t)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(g.url("/user/olivia/notebook/html")),
		chromedp.WaitVisible(chromedp.ID("provider-testop")),
		chromedp.Click(chromedp.ID("provider-testop")),
		chromedp.WaitVisible(chromedp.ID("password")),
	); err != nil {
		t.Fatalf("reach the OP's login form: %v\n%s", err, g.logs())
	}
	submitOPForm(t, ctx, o, g, "olivia")
	who, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("who")))
	if err != nil || who != "hello olivia" {
		t.Fatalf("app says %q (%v), want %q", who, err, "hello olivia")
	}
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc != g.url("/user/olivia/notebook/html") {
		t.Fatalf("ended at %s", loc)
	}
	// Logging out in the browser goes through the OP's end session
	// endpoint and back to the gateway's login page.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(g.url("/hub/logout")),
		chromedp.WaitVisible(chromedp.ID("logout")),
		chromedp.Click(chromedp.ID("logout")),
		chromedp.WaitVisible(chromedp.ID("provider-testop")),
	); err != nil {
		t.Fatalf("log out in the browser: %v\n%s", err, g.logs())
	}
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); !strings.HasPrefix(loc, g.url("/hub/login")) {
		t.Fatalf("after logout the browser is at %s", loc)
	}
	if !g.waitLog(`"msg":"session revoked"`, 0) {
		t.Error("the browser's logout revoked nothing")
	}
}

// submitOPForm checks that the browser is at the OP's login form, logs
// user in there and waits until the app behind the gateway shows.
func submitOPForm(t *testing.T, ctx context.Context, o *testOP, g *gateway, user string) {
	t.Helper()
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); !strings.HasPrefix(loc, o.issuer+"login/username") {
		t.Fatalf("not at the OP's login form: %s", loc)
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), oidcPassword(user)),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("who")),
	); err != nil {
		t.Fatalf("log in at the OP and reach the app: %v\n%s", err, g.logs())
	}
}
