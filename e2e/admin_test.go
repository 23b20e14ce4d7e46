package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const apiToken = "test-api-token-0123456789"

func apiPolicy() string {
	sum := sha256.Sum256([]byte(apiToken))
	return basePolicy + "api_tokens:\n  ci: \"" + hex.EncodeToString(sum[:]) + "\"\n"
}

// metricsText scrapes Caddy's admin endpoint, where hubgate's metrics live.
func (g *gateway) metricsText() string {
	g.t.Helper()
	resp, err := http.Get("http://" + g.adminAddr + "/metrics")
	if err != nil {
		g.t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestAdminStopsAnotherUsersServerInBrowser(t *testing.T) {
	g := startGateway(t, gwOptions{})
	alice := g.login("alice")
	g.whoami(alice, "alice")
	if len(g.containers("alice")) != 1 {
		t.Fatal("alice's server is not running")
	}
	ctx := newBrowser(t)
	navigate(t, ctx, g.url("/hub/admin"))
	waitVisible(t, ctx, g.url("/hub/admin"), chromedp.ID("username"), 20*time.Second)
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("username"), "admin"),
		chromedp.SendKeys(chromedp.ID("password"), accounts["admin"]),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("servers")),
	); err != nil {
		t.Fatalf("admin login to the admin page: %v\n%s", err, g.logTail())
	}
	table, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("servers")))
	if err != nil || !strings.Contains(table, "alice") || !strings.Contains(table, "running") {
		t.Fatalf("admin page servers table: %q %v", table, err)
	}
	if dir := os.Getenv("HUBGATE_SCREENSHOTS"); dir != "" {
		if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
			_ = os.WriteFile(dir+"/admin.png", png, 0o644)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Submit(chromedp.ID("stop-alice-notebook"))); err != nil {
		t.Fatalf("press stop: %v", err)
	}
	eventually(t, 10*time.Second, "alice's container removed", func() bool { return len(g.containers("alice")) == 0 })
	if !g.waitLog(`"msg":"stop","user":"alice","server":"notebook","by":"admin"`, 2*time.Second) {
		t.Errorf("stop not audited")
	}
	// The page comes back without her server.
	waitVisible(t, ctx, g.url("/hub/admin"), chromedp.ID("servers"), 20*time.Second)
	table, err = chromedp.Run(ctx, chromedp.Text(chromedp.ID("servers")))
	if err != nil || !strings.Contains(table, "No servers") {
		t.Errorf("admin page after stop: %q %v", table, err)
	}
	// Her volume stays.
	if vols := docker("volume", "ls", "-q", "--filter", "label=hubgate.deployment="+g.name, "--filter", "label=hubgate.user=alice"); vols == "" {
		t.Errorf("alice's volume went with her server")
	}
}

func TestAdminPageAndAPIRefuseNonAdmins(t *testing.T) {
	g := startGateway(t, gwOptions{policy: apiPolicy()})
	alice := g.login("alice")
	g.whoami(alice, "alice")
	if resp, _ := g.get(alice, "/hub/admin", "Accept", "text/html"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("non-admin on the admin page: %d, want 403", resp.StatusCode)
	}
	for _, p := range []string{"/hub/api/servers", "/hub/api/users"} {
		if resp, _ := g.get(alice, p); resp.StatusCode != http.StatusForbidden {
			t.Errorf("non-admin GET %s: %d, want 403", p, resp.StatusCode)
		}
	}
	if resp, _ := g.do(alice, http.MethodDelete, "/hub/api/servers/bob/notebook", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("non-admin DELETE: %d, want 403", resp.StatusCode)
	}
	if resp, _ := g.get(g.client(), "/hub/api/servers"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous API: %d, want 401", resp.StatusCode)
	}
	if resp, _ := g.get(g.client(), "/hub/api/servers", "Authorization", "Bearer wrong-token"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong API token: %d, want 401", resp.StatusCode)
	}

	// A forged admin form post (no CSRF token) stops nothing.
	admin := g.login("admin")
	form := url.Values{"user": {"alice"}, "server": {"notebook"}}.Encode()
	resp, _ := g.do(admin, http.MethodPost, "/hub/admin", strings.NewReader(form), "Content-Type", "application/x-www-form-urlencoded")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("admin POST without CSRF token: %d, want 403", resp.StatusCode)
	}
	// The right token from another site is refused too.
	_, page := g.get(admin, "/hub/admin", "Accept", "text/html")
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("admin page has no CSRF token (containers %v):\n%s", g.containers("alice"), page)
	}
	form = url.Values{"user": {"alice"}, "server": {"notebook"}, "csrf": {m[1]}}.Encode()
	resp, _ = g.do(admin, http.MethodPost, "/hub/admin", strings.NewReader(form), "Content-Type", "application/x-www-form-urlencoded", "Sec-Fetch-Site", "cross-site")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site admin POST: %d, want 403", resp.StatusCode)
	}
	// API DELETE with the admin's cookie but no CSRF header is refused.
	if resp, _ := g.do(admin, http.MethodDelete, "/hub/api/servers/alice/notebook", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cookie DELETE without CSRF header: %d, want 403", resp.StatusCode)
	}
	if n := len(g.containers("alice")); n != 1 {
		t.Fatalf("forged requests stopped alice's server (%d containers)", n)
	}
}

func TestAdminAPIWithToken(t *testing.T) {
	g := startGateway(t, gwOptions{policy: apiPolicy()})
	c := g.client()
	auth := []string{"Authorization", "Bearer " + apiToken}
	// Start bob's server through the API.
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, body := g.do(c, http.MethodPost, "/hub/api/servers/bob/notebook", nil, auth...)
		if resp.StatusCode == http.StatusOK {
			break
		}
		if resp.StatusCode != http.StatusAccepted || time.Now().After(deadline) {
			t.Fatalf("API start: %d %s", resp.StatusCode, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	resp, body := g.get(c, "/hub/api/servers", auth...)
	var servers struct {
		Servers []struct {
			User, Server, Status string
			Running              bool
			MemoryLimit          int64 `json:"memory_limit_bytes"`
		}
	}
	if err := json.Unmarshal([]byte(body), &servers); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET servers: %d %v %s", resp.StatusCode, err, body)
	}
	if len(servers.Servers) != 1 || servers.Servers[0].User != "bob" || !servers.Servers[0].Running {
		t.Fatalf("servers: %+v", servers.Servers)
	}
	resp, body = g.get(c, "/hub/api/users", auth...)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"name":"bob"`) || !strings.Contains(body, `"servers":["notebook"]`) || !strings.Contains(body, `"name":"mallory"`) {
		t.Fatalf("GET users: %d %s", resp.StatusCode, body)
	}
	// A user the policy does not allow cannot be started.
	if resp, _ := g.do(c, http.MethodPost, "/hub/api/servers/mallory/notebook", nil, auth...); resp.StatusCode != http.StatusForbidden {
		t.Errorf("API start for mallory: %d, want 403", resp.StatusCode)
	}
	if resp, _ := g.do(c, http.MethodDelete, "/hub/api/servers/bob/notebook", nil, auth...); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("API stop: %d", resp.StatusCode)
	}
	if n := len(g.containers("bob")); n != 0 {
		t.Fatalf("bob's server still there after API stop")
	}
	if resp, _ := g.do(c, http.MethodDelete, "/hub/api/servers/bob/notebook", nil, auth...); resp.StatusCode != http.StatusNotFound {
		t.Errorf("second API stop: %d, want 404", resp.StatusCode)
	}
	if !g.waitLog(`"by":"token:ci"`, time.Second) {
		t.Errorf("API actions not audited with the token's name")
	}
}

func TestHomePageShowsAndStopsOwnServer(t *testing.T) {
	g := startGateway(t, gwOptions{})
	alice := g.login("alice")
	_, page := g.get(alice, "/", "Accept", "text/html")
	if !strings.Contains(page, `class="state stopped"`) || !strings.Contains(page, `id="open-notebook"`) {
		t.Fatalf("home page before start:\n%s", page)
	}
	g.whoami(alice, "alice")
	_, page = g.get(alice, "/", "Accept", "text/html")
	if !strings.Contains(page, `class="state running"`) || !strings.Contains(page, `id="stop-notebook"`) || !strings.Contains(page, "width=device-width") {
		t.Fatalf("home page with a running server:\n%s", page)
	}
	m := csrfRE.FindStringSubmatch(page)
	resp, _ := g.do(alice, http.MethodPost, "/hub/stop", strings.NewReader(url.Values{"server": {"notebook"}, "csrf": {m[1]}}.Encode()), "Content-Type", "application/x-www-form-urlencoded")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("stop own server: %d", resp.StatusCode)
	}
	if n := len(g.containers("alice")); n != 0 {
		t.Fatalf("alice's server still runs after she stopped it")
	}
}

func TestMetricsAndReloadResultOnAdminPage(t *testing.T) {
	g := startGateway(t, gwOptions{})
	alice := g.login("alice")
	g.whoami(alice, "alice")
	g.get(alice, "/user/bob/notebook/") // a denial
	writeAtomic(t, g.dir+"/policy/policy.yaml", basePolicy+"  oops: [\n")
	if !g.waitLog(`"msg":"policy reload","ok":false`, 5*time.Second) {
		t.Fatal("bad edit not reported")
	}
	admin := g.login("admin")
	_, page := g.get(admin, "/hub/admin", "Accept", "text/html")
	if !strings.Contains(page, "failed; the previous policy stays in force") || !strings.Contains(page, "policy.yaml:") {
		t.Errorf("admin page does not show the failed reload:\n%s", page)
	}
	text := g.metricsText()
	for _, want := range []string{
		`hubgate_spawn_duration_seconds_count{result="ok"} 1`,
		`hubgate_denials_total{reason="other_user"} 1`,
		`hubgate_policy_reloads_total{result="error"} 1`,
		"hubgate_running_servers",
		"hubgate_active_users",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "hubgate_") && (strings.Contains(line, "alice") || strings.Contains(line, "bob")) {
			t.Errorf("a user name in a metric: %s", line)
		}
	}
}

func TestCheckPolicyCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte(basePolicy), 0o644)
	os.WriteFile(bad, []byte(strings.Replace(basePolicy, "images: [notebook]", "images: [notebok]", 1)+"  research:\n    members: [x]\n"), 0o644)
	out, err := exec.Command(caddyBin, "hubgate", "check-policy", good).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "ok: 1 team, 1 image") {
		t.Fatalf("check-policy good: %v\n%s", err, out)
	}
	out, err = exec.Command(caddyBin, "hubgate", "check-policy", bad).CombinedOutput()
	if err == nil {
		t.Fatalf("check-policy accepted a bad file:\n%s", out)
	}
	if !strings.Contains(string(out), `bad.yaml:10: teams.research.images[0]: unknown image "notebok"`) || !strings.Contains(string(out), "defined twice") {
		t.Errorf("check-policy bad output:\n%s", out)
	}
	t.Logf("caddy hubgate check-policy bad.yaml:\n%s", out)
	out, err = exec.Command(caddyBin, "hubgate", "who-can", good, "Alice").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "research (member)") || !strings.Contains(string(out), "images: notebook") {
		t.Errorf("who-can: %v\n%s", err, out)
	}
}
