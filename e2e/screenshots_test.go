package e2e

import (
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const screenshotPolicy = `admins: [alice]
images:
  notebook:
    image: "hubgate/jupyter-debian:latest"
    port: 8888
    home: /home/jovyan
    description: "Jupyter Notebook (Python 3 and R)"
  testapp:
    image: "hubgate/testapp:latest"
    port: 8888
    description: "Test app"
teams:
  research:
    members: [alice, bob]
    images: [notebook, testapp]
`

// TestPagesInTheBrowser walks Chromium through login, home, the progress
// page of a real notebook, the notebook, the admin page and an error page,
// and checks that every page after login carries the header (user, home,
// admin, log out). With HUBGATE_SCREENSHOTS=<dir> (make screenshots) it
// writes each page as a PNG there, for the README.
func TestPagesInTheBrowser(t *testing.T) {
	buildTestImage(t, "jupyter-debian", jupyterImage)
	g := startGateway(t, gwOptions{policy: screenshotPolicy, env: map[string]string{"HUBGATE_START_WAIT": "1ms"}})
	// Create the gateway's network before the browser starts (Chromium
	// aborts requests when host interfaces change).
	if resp, _ := g.getReady(g.login("bob"), "/user/bob/testapp/"); resp.StatusCode != 200 {
		t.Fatalf("bob's test app: %d", resp.StatusCode)
	}
	dir := os.Getenv("HUBGATE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := startBrowser(t, 4*time.Minute)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1100, 700)); err != nil {
		t.Fatal(err)
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	header := func(page string, admin bool) {
		t.Helper()
		ids := []string{"#nav-user", "#nav-home", "#nav-logout"}
		if admin {
			ids = append(ids, "#nav-admin")
		}
		for _, id := range ids {
			if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("`+id+`").length`)); err != nil || n != 1 {
				t.Errorf("%s page: header link %s missing", page, id)
			}
		}
	}
	navigate(t, ctx, g.url("/hub/login"))
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("username"))); err != nil {
		t.Fatal(err)
	}
	shot("login")
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), accounts["alice"]),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("open-notebook")),
	); err != nil {
		t.Fatalf("log in: %v\n%s", err, g.logs())
	}
	header("home", true)
	shot("home")

	// The progress page, as a browser gets it while the notebook starts
	// (fetched until it shows the step of waiting for the app; the page
	// refreshes every second, too fast to catch reliably in Chromium).
	c := g.login("alice")
	var page string
	seen := map[string]bool{}
	for range 100 {
		resp, body := g.get(c, "/user/alice/notebook/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
		if resp.StatusCode != http.StatusAccepted {
			break
		}
		for _, step := range []string{"starting the container", "waiting for the app to answer"} {
			if strings.Contains(body, step) {
				seen[step] = true
			}
		}
		page = body
		if seen["waiting for the app to answer"] {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !seen["starting the container"] && !seen["waiting for the app to answer"] || page == "" {
		t.Errorf("the progress page showed no start step before the app appeared (saw %v)", seen)
	}
	if !strings.Contains(page, `id="nav-logout"`) {
		t.Errorf("the progress page has no header")
	}
	if page != "" {
		page = strings.Replace(page, `<meta http-equiv="refresh" content="1">`, "", 1)
		navigate(t, ctx, "data:text/html;base64,"+base64.StdEncoding.EncodeToString([]byte(page)))
		shot("progress")
	}
	navigate(t, ctx, g.url("/user/alice/notebook/"))
	// The page refreshes into the notebook.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		title, _ := chromedp.Run(ctx, chromedp.Title())
		if title != "" && !strings.Contains(title, "hubgate") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the notebook did not appear (title %q)\n%s", title, g.logs())
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(time.Second)
	shot("notebook")

	navigate(t, ctx, g.url("/hub/admin"))
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("servers"))); err != nil {
		t.Fatal(err)
	}
	header("admin", true)
	shot("admin")

	navigate(t, ctx, g.url("/user/alice/nope/"))
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("message"))); err != nil {
		t.Fatal(err)
	}
	header("error", true)
	shot("error")
}
