package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// startExampleGateway runs the gateway with the policy `make run` serves
// when the Jupyter image is built: policies/example.yaml and
// policies/example-notebook.yaml as one folder (plus the test accounts).
func startExampleGateway(t *testing.T, env map[string]string) *gateway {
	t.Helper()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(repoRoot, "policies", name))
		if err != nil {
			t.Fatalf("read make run's policy: %v", err)
		}
		return string(b)
	}
	g := newGateway(t, gwOptions{policy: read("example.yaml"), env: env})
	writeAtomic(t, filepath.Join(g.dir, "policy", "example-notebook.yaml"), read("example-notebook.yaml"))
	g.start()
	return g
}

// The R check, on make run's own policy: the home page offers the
// notebook beside the test app; the test app, started first, makes the
// home volume, which the notebook's user can then write to; Jupyter lists
// the R kernel beside Python; and an R cell, cat(6*7), typed into a
// notebook on the R kernel prints 42 through the gateway's websockets.
func TestJupyterRKernelThroughGateway(t *testing.T) {
	buildTestImage(t, "jupyter-debian", jupyterImage)
	g := startExampleGateway(t, map[string]string{"HUBGATE_START_TIMEOUT": "2m", "HUBGATE_START_WAIT": "1ms"})
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v\ngateway log:\n%s", what, err, g.logs())
		}
	}

	// Both servers are on alice's home page.
	c := g.login("alice")
	resp, body := g.navigate(c, "/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Jupyter Notebook (Python 3 and R)") || !strings.Contains(body, "Test app") {
		t.Fatalf("home page: %d, want both servers listed:\n%s", resp.StatusCode, body)
	}

	// The test app starts first and so creates the home volume; it keeps
	// a file there.
	if resp, body := g.getReady(c, "/user/alice/testapp/whoami"); resp.StatusCode != http.StatusOK {
		t.Fatalf("start the test app: %d %s", resp.StatusCode, body)
	}
	if resp, body := g.do(c, http.MethodPut, "/user/alice/testapp/files/from-testapp.txt", strings.NewReader("shared home")); resp.StatusCode/100 != 2 {
		t.Fatalf("write through the test app: %d %s", resp.StatusCode, body)
	}

	ctx := newJupyterBrowser(t)
	base := "/user/alice/notebook/"
	step("open the notebook server", nbVisit(ctx, g.url(base), "#username", time.Minute))
	step("log in", nbWithin(ctx, 20*time.Second,
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), accounts["alice"]),
		chromedp.Click(chromedp.ID("login")),
	))
	eventually(t, 20*time.Second, "the session cookie", func() bool { return nbHasCookie(ctx, g.url("/"), "__Host-hubgate-session") })
	if err := nbWithin(ctx, 30*time.Second, chromedp.WaitVisible(chromedp.ID("notebook_list"))); err != nil {
		step("reach the tree", nbVisit(ctx, g.url(base), "#notebook_list", 2*time.Minute))
	}

	// Jupyter lists R beside Python 3.
	var specs struct {
		Kernelspecs map[string]struct {
			Spec struct {
				DisplayName string `json:"display_name"`
				Language    string `json:"language"`
			} `json:"spec"`
		} `json:"kernelspecs"`
	}
	var raw string
	step("list the kernels", nbRetry(5, func() error {
		var err error
		raw, err = chromedp.Run(ctx, chromedp.Evaluate[string](`fetch("`+base+`api/kernelspecs").then(r => r.text())`, chromedp.EvalAwaitPromise))
		if err == nil {
			err = json.Unmarshal([]byte(raw), &specs)
		}
		return err
	}))
	if r, py := specs.Kernelspecs["ir"], specs.Kernelspecs["python3"]; r.Spec.DisplayName != "R" || r.Spec.Language != "R" || py.Spec.Language != "python" {
		t.Fatalf("kernelspecs: %s, want ir (R) and python3", raw)
	}

	// The notebook's user (jovyan) sees the test app's file and can write
	// in the home the test app made: create a notebook on the R kernel.
	var status int
	step("create the R notebook", nbRetry(5, func() error {
		var err error
		status, err = chromedp.Run(ctx, chromedp.Evaluate[int](`fetch("`+base+`api/contents/answer-r.ipynb", {
			method: "PUT", headers: {"Content-Type": "application/json"},
			body: JSON.stringify({type: "notebook", format: "json", content: {
				cells: [{cell_type: "code", source: "", metadata: {}, outputs: [], execution_count: null}],
				metadata: {kernelspec: {name: "ir", display_name: "R", language: "R"}},
				nbformat: 4, nbformat_minor: 4}})
		}).then(r => r.status)`, chromedp.EvalAwaitPromise))
		return err
	}))
	if status != http.StatusCreated && status != http.StatusOK {
		t.Fatalf("create the R notebook in the home the test app made: status %d (is the volume writable by uid 1000?)", status)
	}
	shared, err := chromedp.Run(ctx, chromedp.Evaluate[string](`fetch("`+base+`api/contents/from-testapp.txt?content=1").then(r => r.json()).then(j => j.content)`, chromedp.EvalAwaitPromise))
	step("read the test app's file from Jupyter", err)
	if shared != "shared home" {
		t.Fatalf("the test app's file in Jupyter: %q", shared)
	}

	// Open it: the R kernel starts and connects over the gateway's
	// websocket; run cat(6*7) in the first cell.
	runFirstCell(t, ctx, g, step, base+"notebooks/answer-r.ipynb", "ir", "cat(6*7)", "42")
	// The kernel that answered is R: the language the page reports for it.
	lang, err := chromedp.Run(ctx, chromedp.Evaluate[string](`Jupyter.notebook.kernel.info_reply && Jupyter.notebook.kernel.info_reply.language_info ? Jupyter.notebook.kernel.info_reply.language_info.name : ""`))
	step("read the kernel's language", err)
	if lang != "R" {
		t.Fatalf("the kernel's language is %q, want R", lang)
	}
}
