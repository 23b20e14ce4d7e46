package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

var newTokenRE = regexp.MustCompile(`id="new-token" readonly value="(hgp_[^"]+)"`)

// homeToken makes a personal token with the home page's form, as a
// browser would, and returns it from the page that shows it once.
func (g *gateway) homeToken(c *http.Client, note, scope, expires string) string {
	g.t.Helper()
	_, home := g.navigate(c, "/")
	m := csrfRE.FindStringSubmatch(home)
	if m == nil || !strings.Contains(home, `id="new-token-form"`) {
		g.t.Fatalf("home page has no token form:\n%s", home)
	}
	form := url.Values{"csrf": {m[1]}, "note": {note}, "scope": {scope}, "expires": {expires}}
	req, _ := http.NewRequest(http.MethodPost, g.url("/hub/tokens"), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", g.url(""))
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	body := readBody(g.t, resp)
	t := newTokenRE.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || t == nil {
		g.t.Fatalf("make a token: %d\n%s", resp.StatusCode, body)
	}
	return t[1]
}

// curl runs Debian's curl against the gateway (trusting its internal CA)
// and returns the status and body.
func (g *gateway) curl(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ca := filepath.Join(g.dir, "data", "caddy", "pki", "authorities", "local", "root.crt")
	all := append([]string{"-sS", "--max-time", "60", "--cacert", ca, "-w", "\n%{http_code}"}, args...)
	out, err := exec.Command("curl", all...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s (is Debian's curl installed? apt-get install -y curl)", args, err, out)
	}
	s := strings.TrimRight(string(out), "\n")
	i := strings.LastIndex(s, "\n")
	code, _ := strconv.Atoi(s[i+1:])
	if i < 0 {
		return code, ""
	}
	return code, s[:i]
}

// kernelSays runs code on a Jupyter kernel over its channels websocket,
// authenticated by the token alone, and returns what it printed.
func kernelSays(ctx context.Context, t *testing.T, ws *websocket.Conn, code string) string {
	t.Helper()
	send := func(msgType string, content map[string]any) string {
		id := fmt.Sprintf("hubgate-%d", time.Now().UnixNano())
		msg := map[string]any{
			"header":        map[string]any{"msg_id": id, "username": "alice", "session": "hubgate-e2e", "msg_type": msgType, "version": "5.3", "date": time.Now().UTC().Format(time.RFC3339)},
			"parent_header": map[string]any{}, "metadata": map[string]any{}, "content": content, "channel": "shell", "buffers": []any{},
		}
		b, _ := json.Marshal(msg)
		if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatalf("send %s: %v", msgType, err)
		}
		return id
	}
	type reply struct {
		Channel string `json:"channel"`
		Header  struct {
			MsgType string `json:"msg_type"`
		}
		ParentHeader struct {
			MsgID string `json:"msg_id"`
		} `json:"parent_header"`
		Content struct {
			Name, Text string
		}
	}
	// The kernel answers kernel_info once it is ready.
	ready := false
	for try := 0; try < 30 && !ready; try++ {
		id := send("kernel_info_request", map[string]any{})
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		for {
			_, b, err := ws.Read(rctx)
			if err != nil {
				break
			}
			var r reply
			if json.Unmarshal(b, &r) == nil && r.Header.MsgType == "kernel_info_reply" && r.ParentHeader.MsgID == id {
				ready = true
				break
			}
		}
		cancel()
	}
	if !ready {
		t.Fatal("the kernel never answered kernel_info_request")
	}
	id := send("execute_request", map[string]any{"code": code, "silent": false, "store_history": false, "user_expressions": map[string]any{}, "allow_stdin": false, "stop_on_error": true})
	var out strings.Builder
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("reading the kernel's answer: %v (so far %q)", err, out.String())
		}
		var r reply
		if json.Unmarshal(b, &r) != nil || r.ParentHeader.MsgID != id {
			continue
		}
		switch r.Header.MsgType {
		case "stream":
			out.WriteString(r.Content.Text)
		case "execute_reply":
			return out.String()
		}
	}
}

// The check: a token made on the home page drives curl to start
// a server on JupyterHub's path and to make a kernel, and runs code on it
// over a websocket, with no cookie; an expired or revoked token is
// refused, a revoked token's websocket is closed, and another user's
// token never reaches alice's server.
func TestPersonalTokenDrivesJupyterWithCurl(t *testing.T) {
	buildTestImage(t, "jupyter-debian", jupyterImage)
	policy := strings.Replace(jupyterPolicy, "members: [alice, admin]", "members: [alice, bob, admin]", 1)
	g := startGateway(t, gwOptions{policy: policy, env: map[string]string{"HUBGATE_START_TIMEOUT": "2m", "HUBGATE_START_WAIT": "1ms"}})
	tok := g.homeToken(g.login("alice"), "e2e laptop", "", "1")
	auth := "Authorization: token " + tok

	code, body := g.curl(t, "-H", auth, g.url("/hub/api/user"))
	var me struct {
		Name   string         `json:"name"`
		Scopes []string       `json:"scopes"`
		Srv    map[string]any `json:"servers"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &me) != nil || me.Name != "alice" {
		t.Fatalf("GET /hub/api/user: %d %s", code, body)
	}
	code, body = g.curl(t, "-X", "POST", "-H", auth, g.url("/hub/api/users/alice/servers/notebook"))
	if code != http.StatusCreated && code != http.StatusAccepted {
		t.Fatalf("start on JupyterHub's path: %d %s", code, body)
	}
	eventually(t, 2*time.Minute, "the server is ready", func() bool {
		_, body := g.curl(t, "-H", auth, g.url("/hub/api/user"))
		var me struct {
			Servers map[string]struct{ Ready bool } `json:"servers"`
		}
		return json.Unmarshal([]byte(body), &me) == nil && me.Servers["notebook"].Ready
	})
	var kernel struct{ ID string }
	eventually(t, time.Minute, "a kernel is made", func() bool {
		code, body := g.curl(t, "-X", "POST", "-H", auth, "-H", "Content-Type: application/json", "-d", `{"name":"python3"}`, g.url("/user/alice/notebook/api/kernels"))
		return code == http.StatusCreated && json.Unmarshal([]byte(body), &kernel) == nil && kernel.ID != ""
	})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wsURL := "wss://localhost:" + strconv.Itoa(g.httpsPort) + "/user/alice/notebook/api/kernels/" + kernel.ID + "/channels"
	dial := func(token string) (*websocket.Conn, *http.Response, error) {
		return websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: &http.Client{Transport: g.transport()},
			HTTPHeader: http.Header{"Authorization": {"token " + token}}})
	}
	ws, _, err := dial(tok)
	if err != nil {
		t.Fatalf("kernel websocket with the token: %v", err)
	}
	defer ws.CloseNow()
	if got := kernelSays(ctx, t, ws, "print(6*7)"); strings.TrimSpace(got) != "42" {
		t.Fatalf("the kernel printed %q, want 42", got)
	}

	// Another user's token never reaches alice's server, nor her kernel.
	bobs := g.homeToken(g.login("bob"), "bob's", "", "1")
	if code, body := g.curl(t, "-H", "Authorization: token "+bobs, g.url("/user/alice/notebook/api/kernels")); code != http.StatusForbidden {
		t.Fatalf("bob's token on alice's server: %d %s", code, body)
	}
	if _, resp, err := dial(bobs); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bob's token on alice's kernel websocket: %v", err)
	}

	// An expired token is refused.
	code, body = g.curl(t, "-X", "POST", "-H", auth, "-H", "Content-Type: application/json", "-d", `{"note":"brief","expires_in":1}`, g.url("/hub/api/users/alice/tokens"))
	var brief struct{ Token, ID string }
	if code != http.StatusCreated || json.Unmarshal([]byte(body), &brief) != nil || brief.Token == "" {
		t.Fatalf("make a short token: %d %s", code, body)
	}
	time.Sleep(1500 * time.Millisecond)
	if code, body := g.curl(t, "-H", "Authorization: token "+brief.Token, g.url("/user/alice/notebook/api/kernels")); code != http.StatusUnauthorized || !strings.Contains(body, "expired") {
		t.Fatalf("expired token: %d %s", code, body)
	}

	// A revoked token is refused, and its open websocket closed.
	code, body = g.curl(t, "-X", "POST", "-H", auth, "-H", "Content-Type: application/json", "-d", `{"note":"doomed","expires_in":600}`, g.url("/hub/api/users/alice/tokens"))
	var doomed struct{ Token, ID string }
	if code != http.StatusCreated || json.Unmarshal([]byte(body), &doomed) != nil {
		t.Fatalf("make a token to revoke: %d %s", code, body)
	}
	ws2, _, err := dial(doomed.Token)
	if err != nil {
		t.Fatalf("websocket with the token to revoke: %v", err)
	}
	defer ws2.CloseNow()
	if code, body := g.curl(t, "-X", "DELETE", "-H", auth, g.url("/hub/api/users/alice/tokens/"+doomed.ID)); code != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if code, _ := g.curl(t, "-H", "Authorization: Bearer "+doomed.Token, g.url("/user/alice/notebook/api/kernels")); code != http.StatusUnauthorized {
		t.Fatalf("revoked token: %d", code)
	}
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	for {
		if _, _, err := ws2.Read(rctx); err != nil {
			if rctx.Err() != nil {
				t.Fatal("the revoked token's websocket stayed open")
			}
			break
		}
	}
	// The first token still works; the audit log has the token's life.
	if code, _ := g.curl(t, "-H", auth, g.url("/user/alice/notebook/api/kernels")); code != http.StatusOK {
		t.Fatalf("the first token after another's revocation: %d", code)
	}
	logs := g.logs()
	for _, want := range []string{`"msg":"token created"`, `"msg":"token used"`, `"msg":"token revoked"`, `"reason":"expired"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
	if strings.Contains(logs, tok) || strings.Contains(logs, doomed.Token) {
		t.Error("a token reached the log")
	}
}
