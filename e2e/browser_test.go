package e2e

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// newBrowser starts headless Chromium (Debian's package) with the flags
// this closed network needs and a fresh profile, for at most 90 seconds of
// test. It fails, never skips, when Chromium is missing.
func newBrowser(t *testing.T) context.Context {
	return startBrowser(t, 90*time.Second)
}

// startBrowser is newBrowser with another deadline and extra flags.
func startBrowser(t *testing.T, deadline time.Duration, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (make test-deps installs Debian's chromium): %v", err)
	}
	opts := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// The gateway's certificate comes from a CA made for this test.
		chromedp.Flag("ignore-certificate-errors", true),
	}, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(func(string, ...any) {}))
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	tctx, cancel := context.WithTimeout(ctx, deadline)
	t.Cleanup(cancel)
	return tctx
}

func TestBrowserLogsInAndReachesApp(t *testing.T) {
	g := startGateway(t, gwOptions{env: map[string]string{"HUBGATE_START_WAIT": "1ms"}})
	prepareNetwork(g)
	ctx := newBrowser(t)
	// Asking for the app sends the browser to the login page.
	navigate(t, ctx, g.url("/user/alice/notebook/html"))
	waitVisible(t, ctx, g.url("/user/alice/notebook/html"), chromedp.ID("username"), 20*time.Second)
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || !strings.Contains(loc, "/hub/login?next=") {
		t.Fatalf("not sent to the login page: %s %v", loc, err)
	}
	// Log in; the progress page refreshes itself into the app.
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), accounts["alice"]),
		chromedp.Click(chromedp.ID("login")),
	); err != nil {
		t.Fatalf("log in: %v\n%s", err, g.logTail())
	}
	waitVisible(t, ctx, g.url("/user/alice/notebook/html"), chromedp.ID("who"), 60*time.Second)
	who, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("who")))
	if err != nil || who != "hello alice" {
		t.Fatalf("app says %q (%v), want %q", who, err, "hello alice")
	}
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); !strings.HasSuffix(loc, "/user/alice/notebook/html") {
		t.Fatalf("ended at %s", loc)
	}
	if dir := os.Getenv("HUBGATE_SCREENSHOTS"); dir != "" {
		if err := chromedp.Do(ctx, chromedp.Navigate(g.url("/"))); err == nil {
			if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
				_ = os.WriteFile(dir+"/home.png", png, 0o644)
			}
		}
	}
}

// waitVisible waits until sel is visible, recovering from Chromium's own
// error page: on this host, starting or stopping a container adds or
// removes a veth interface, and Chromium aborts requests in flight when it
// sees the network change (ERR_NETWORK_CHANGED). A browser on another
// machine never sees that; here the test loads again the page it wanted.
func waitVisible(t *testing.T, ctx context.Context, reload string, sel chromedp.ID, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := chromedp.Do(tctx, chromedp.WaitVisible(sel))
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for #%s: %v", sel, err)
		}
		if loc, _ := chromedp.Run(ctx, chromedp.Location()); strings.HasPrefix(loc, "chrome-error://") {
			if err := chromedp.Do(ctx, chromedp.Navigate(reload)); err != nil {
				t.Logf("reload %s: %v", reload, err)
			}
		}
	}
}

// navigate loads url, again if Chromium aborted it for a network change
// (see waitVisible).
func navigate(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	var err error
	for range 5 {
		if err = chromedp.Do(ctx, chromedp.Navigate(url)); err == nil || !strings.Contains(err.Error(), "ERR_NETWORK_CHANGED") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("load %s: %v", url, err)
	}
}

// prepareNetwork makes the gateway create its Docker network now (by
// starting bob's server), so that the bridge's new address does not make
// Chromium abort a request later in the test.
func prepareNetwork(g *gateway) {
	g.whoami(g.login("bob"), "bob")
}
