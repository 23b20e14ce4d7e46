package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/coder/websocket"
)

// jupyterImage is Debian's classic Jupyter Notebook 6 with the shared
// entrypoint, built without a registry by images/jupyter-debian/build.sh.
const jupyterImage = "hubgate/jupyter-debian:latest"

const jupyterPolicy = `admins: [admin]
images:
  notebook:
    image: "hubgate/jupyter-debian:latest"
    port: 8888
    home: /home/jovyan
    description: "Jupyter Notebook (Debian)"
teams:
  research:
    members: [alice, admin]
    images: [notebook]
`

var jupyterImageBuilds sync.Map // tag -> *jupyterImageBuild

type jupyterImageBuild struct {
	once sync.Once
	err  error
	out  []byte
}

// buildTestImage runs images/<dir>/build.sh once per test process. The
// scripts skip the build while the image's input hash is current, so
// after `make images` this costs a second.
func buildTestImage(t testing.TB, dir, tag string) {
	t.Helper()
	v, _ := jupyterImageBuilds.LoadOrStore(tag, &jupyterImageBuild{})
	b := v.(*jupyterImageBuild)
	b.once.Do(func() {
		b.out, b.err = exec.Command(filepath.Join(repoRoot, "images", dir, "build.sh"), tag).CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("building %s with images/%s/build.sh failed: %v\n%s", tag, dir, b.err, b.out)
	}
}

// nbContents is the part of a Jupyter contents-API notebook the tests read.
type nbContents struct {
	Name    string `json:"name"`
	Content struct {
		Cells []struct {
			CellType string `json:"cell_type"`
			Source   any    `json:"source"`
			Outputs  []struct {
				Text any `json:"text"`
			} `json:"outputs"`
		} `json:"cells"`
	} `json:"content"`
}

// nbJoined reads a notebook field that is a string or a list of strings.
func nbJoined(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []any:
		var b strings.Builder
		for _, s := range v {
			fmt.Fprint(&b, s)
		}
		return b.String()
	}
	return fmt.Sprint(v)
}

// newJupyterBrowser is newBrowser (same Chromium flags) for a longer
// test: the browser starts without a deadline, and the context returned
// bounds the whole test to 5 minutes (actions also get their own timeouts).
func newJupyterBrowser(t *testing.T) context.Context {
	t.Helper()
	// Each network Docker adds on the host (the gateway's own, other
	// tests') is an IP address change to Chromium, which then closes its
	// HTTP/2 sessions and fails every request on them with
	// ERR_NETWORK_CHANGED. Over HTTP/1.1 only requests still connecting
	// fail, and visit and retry cover those.
	return startBrowser(t, 5*time.Minute, chromedp.Flag("disable-http2", true))
}

// nbWithin runs actions with a timeout of their own.
func nbWithin(ctx context.Context, d time.Duration, actions ...chromedp.Action[chromedp.Void]) error {
	tctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return chromedp.Do(tctx, actions...)
}

// nbVisit opens url until the element css shows, for up to d. Chromium
// aborts navigations in flight with ERR_NETWORK_CHANGED whenever Docker
// adds a network (the gateway's, on its first start; other tests') and may
// then stop on its error page, so each try waits at most 20s.
func nbVisit(ctx context.Context, url, css string, d time.Duration) error {
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		if err := nbWithin(ctx, 20*time.Second, chromedp.Navigate(url)); err != nil {
			last = err
			time.Sleep(500 * time.Millisecond)
			continue
		}
		if err := nbWithin(ctx, 20*time.Second, chromedp.WaitVisible(chromedp.CSS(css))); err != nil {
			last = err
			continue
		}
		return nil
	}
	return fmt.Errorf("%s did not show %s within %s: %v", url, css, d, last)
}

// nbRetry calls f up to n times, a second apart, until it succeeds.
func nbRetry(n int, f func() error) error {
	var err error
	for i := 0; i < n; i++ {
		if err = f(); err == nil {
			return nil
		}
		time.Sleep(time.Second)
	}
	return err
}

// nbHasCookie reports whether the browser holds the named cookie for url.
func nbHasCookie(ctx context.Context, url, name string) bool {
	found := false
	err := nbWithin(ctx, 5*time.Second, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		res, err := cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
		for _, c := range res.Cookies {
			found = found || c.Name == name
		}
		return err
	}))
	return err == nil && found
}

// The acceptance test: a browser logs in, opens the notebook
// server, runs print(6*7) on a real kernel over the gateway's websockets,
// saves; the container is removed, respawned on the next request with the
// same volume, and the notebook is still there.
func TestJupyterNotebookRunsCodeAndKeepsIt(t *testing.T) {
	buildTestImage(t, "jupyter-debian", jupyterImage)
	g := startGateway(t, gwOptions{policy: jupyterPolicy, env: map[string]string{"HUBGATE_START_TIMEOUT": "2m", "HUBGATE_START_WAIT": "1ms"}})
	ctx := newJupyterBrowser(t)
	base := "/user/alice/notebook/"
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v\ngateway log:\n%s", what, err, g.logs())
		}
	}

	// Opening the server sends the browser to the login form; logging in
	// sends it back, the server starts and the progress page turns into
	// Notebook's tree.
	step("open the notebook server", nbVisit(ctx, g.url(base), "#username", time.Minute))
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); !strings.Contains(loc, "/hub/login?next=") {
		t.Fatalf("not sent to the login page: %s", loc)
	}
	step("log in", nbWithin(ctx, 20*time.Second,
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), accounts["alice"]),
		chromedp.Click(chromedp.ID("login")),
	))
	eventually(t, 20*time.Second, "the session cookie", func() bool { return nbHasCookie(ctx, g.url("/"), "__Host-hubgate-session") })
	if err := nbWithin(ctx, 30*time.Second, chromedp.WaitVisible(chromedp.ID("notebook_list"))); err != nil {
		step("reach the tree", nbVisit(ctx, g.url(base), "#notebook_list", 2*time.Minute))
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if !strings.HasPrefix(loc, g.url(base+"tree")) {
		t.Fatalf("landed on %s, want the tree", loc)
	}
	ids := g.containers("alice")
	if len(ids) != 1 {
		t.Fatalf("containers: %v", ids)
	}
	first := ids[0]

	// Create a notebook with one empty code cell (contents API, from the page).
	var status int
	err := nbRetry(5, func() error {
		var err error
		status, err = chromedp.Run(ctx, chromedp.Evaluate[int](`fetch("`+base+`api/contents/answer.ipynb", {
			method: "PUT", headers: {"Content-Type": "application/json"},
			body: JSON.stringify({type: "notebook", format: "json", content: {
				cells: [{cell_type: "code", source: "", metadata: {}, outputs: [], execution_count: null}],
				metadata: {kernelspec: {name: "python3", display_name: "Python 3", language: "python"}},
				nbformat: 4, nbformat_minor: 4}})
		}).then(r => r.status)`, chromedp.EvalAwaitPromise))
		return err
	})
	step("create the notebook", err)
	if status != http.StatusCreated && status != http.StatusOK {
		t.Fatalf("create the notebook: status %d", status)
	}

	// Open it: the kernel connects over the gateway's websocket; run
	// print(6*7) in the first cell.
	runFirstCell(t, ctx, g, step, base+"notebooks/answer.ipynb", "", "print(6*7)", "42")

	// Save with the toolbar's button; the saved file has the code and 42.
	step("save", nbWithin(ctx, 20*time.Second, chromedp.Click(chromedp.CSS("#save-notbook button"))))
	readSaved := func() (nbContents, error) {
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		raw, err := chromedp.Run(tctx, chromedp.Evaluate[string](`fetch("`+base+`api/contents/answer.ipynb?content=1").then(r => r.text())`, chromedp.EvalAwaitPromise))
		var c nbContents
		if err == nil {
			err = json.Unmarshal([]byte(raw), &c)
		}
		return c, err
	}
	saved := func(c nbContents) bool {
		return len(c.Content.Cells) > 0 && nbJoined(c.Content.Cells[0].Source) == "print(6*7)" &&
			len(c.Content.Cells[0].Outputs) == 1 && strings.TrimSpace(nbJoined(c.Content.Cells[0].Outputs[0].Text)) == "42"
	}
	lastSave := time.Now()
	eventually(t, 60*time.Second, "the notebook is saved with its output", func() bool {
		c, err := readSaved()
		if err == nil && saved(c) {
			return true
		}
		if time.Since(lastSave) > 5*time.Second { // a save lost to a network change
			lastSave = time.Now()
			_ = nbWithin(ctx, 10*time.Second, chromedp.Click(chromedp.CSS("#save-notbook button")))
		}
		time.Sleep(500 * time.Millisecond)
		return false
	})

	// The same session reaches the kernel's websocket from a Go client
	// with the page's Origin; a foreign Origin is refused by Notebook,
	// since the gateway keeps Host and Notebook compares the two.
	checkNotebookKernelOrigins(t, g)

	// The container refuses anyone who reaches it around the gateway.
	checkNotebookNeedsToken(t, first)

	// Remove the container; the next request starts a new one on the same
	// volume, and the notebook is there.
	docker("rm", "-f", first)
	eventually(t, 15*time.Second, "the container is gone", func() bool { return len(g.containers("alice")) == 0 })
	var c nbContents
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := nbWithin(ctx, 20*time.Second, chromedp.Navigate(g.url(base+"api/contents/answer.ipynb?content=1")))
		if err == nil {
			tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			body, _ := chromedp.Run(tctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
			cancel()
			if json.Unmarshal([]byte(body), &c) == nil && c.Name == "answer.ipynb" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the notebook did not come back after the container was removed\n%s", g.logs())
		}
		time.Sleep(time.Second)
	}
	if !saved(c) {
		t.Fatalf("the notebook after respawn lost its cell or output: %+v", c)
	}
	if now := g.containers("alice"); len(now) != 1 || now[0] == first {
		t.Fatalf("containers after respawn: %v (first %s)", now, first)
	}
}

// checkNotebookKernelOrigins dials a running kernel's channels websocket through
// the gateway with the browser's Origin (accepted) and a foreign one
// (refused by Notebook's same-origin check).
func checkNotebookKernelOrigins(t *testing.T, g *gateway) {
	t.Helper()
	c := g.login("alice")
	resp, body := g.get(c, "/user/alice/notebook/api/kernels")
	var kernels []struct{ ID string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &kernels) != nil || len(kernels) == 0 {
		t.Fatalf("list kernels: %d %s", resp.StatusCode, body)
	}
	ws := "wss://localhost:" + strconv.Itoa(g.httpsPort) + "/user/alice/notebook/api/kernels/" + kernels[0].ID + "/channels"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, ws, &websocket.DialOptions{HTTPClient: c,
		HTTPHeader: http.Header{"Origin": {"https://localhost:" + strconv.Itoa(g.httpsPort)}}})
	if err != nil {
		t.Fatalf("kernel websocket with the page's Origin: %v", err)
	}
	conn.Close(websocket.StatusNormalClosure, "")
	_, resp, err = websocket.Dial(ctx, ws, &websocket.DialOptions{HTTPClient: c,
		HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		t.Fatalf("kernel websocket with a foreign Origin: err=%v status=%d, want 403", err, code)
	}
}

// checkNotebookNeedsToken asks the notebook server from inside its own
// container (loopback), without and with the container secret.
func checkNotebookNeedsToken(t *testing.T, id string) {
	t.Helper()
	script := `
import os, urllib.request as u, urllib.error as e
class NoRedirect(u.HTTPRedirectHandler):
    def redirect_request(self, *a, **k): return None
o = u.build_opener(NoRedirect)
base = "http://127.0.0.1:8888" + os.environ["HUBGATE_BASE_URL"]
def get(path, hdr):
    try:
        r = o.open(u.Request(base + path, headers=hdr)); return "%d" % r.status
    except e.HTTPError as x:
        return "%d %s" % (x.code, x.headers.get("Location") or "")
tok = {"Authorization": "token " + os.environ["HUBGATE_TOKEN"]}
print(get("api/contents", {}))
print(get("tree", {}))
print(get("api/contents", {"Authorization": "token wrong"}))
print(get("api/contents", tok))
print(get("tree", tok))
`
	out, err := exec.Command("docker", "exec", id, "python3", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("probe the container: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []string{"403 ", "302 /user/alice/notebook/login?next=", "403 ", "200", "200"}
	if len(lines) != len(want) {
		t.Fatalf("probe output:\n%s", out)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("probe %d: %q, want %q...", i, lines[i], w)
		}
	}
}

// runFirstCell opens the notebook at path through the gateway, waits until
// its kernel (named kernel, or any when empty) connects over the gateway's
// websocket and is idle, types code into the first cell, runs it with
// Shift+Enter and fails unless the cell's output becomes want.
func runFirstCell(t *testing.T, ctx context.Context, g *gateway, step func(string, error), path, kernel, code, want string) {
	t.Helper()
	step("open the notebook", nbVisit(ctx, g.url(path), ".cell .CodeMirror", time.Minute))
	cond := `Jupyter.notebook.kernel.is_connected()`
	if kernel != "" {
		cond += ` && Jupyter.notebook.kernel.name === "` + kernel + `"`
	}
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](`!!(window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel && `+cond+` && document.querySelector("#kernel_indicator_icon.kernel_idle_icon"))`,
		chromedp.WithPollingInterval(200*time.Millisecond), chromedp.WithPollingTimeout(90*time.Second)))
	step("the kernel connects and becomes idle", err)
	step("type and run "+code, nbWithin(ctx, 20*time.Second,
		chromedp.Click(chromedp.CSS(".cell .CodeMirror")),
		chromedp.KeyEvent(code),
		chromedp.KeyEvent(kb.Enter, chromedp.KeyModifiers(chromedp.ModifierShift)),
	))
	out, err := chromedp.Run(ctx, chromedp.PollFunction[string](`() => {
		const o = document.querySelector(".cell .output_area .output_text");
		return o && o.innerText.trim() === `+strconv.Quote(want)+` ? o.innerText.trim() : false;
	}`, chromedp.WithPollingInterval(200*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second)))
	if err != nil {
		src, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`Array.from(document.querySelectorAll(".cell")).map(c => c.innerText).join("\n---\n")`))
		t.Fatalf("no %s from %s: %v\ncells:\n%s\ngateway log:\n%s", want, code, err, src, g.logs())
	}
	if out != want {
		t.Fatalf("output %q, want %q", out, want)
	}
}
