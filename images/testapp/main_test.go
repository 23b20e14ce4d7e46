package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

const (
	testToken  = "s3cret"
	testPrefix = "/user/alice/notebook/"
)

// newTestServer starts the app's handler with a fresh home directory.
func newTestServer(t *testing.T) (*httptest.Server, config) {
	t.Helper()
	cfg := config{Port: "8888", Token: testToken, BaseURL: testPrefix, User: "alice", Home: t.TempDir()}
	srv := httptest.NewServer(newHandler(cfg))
	t.Cleanup(srv.Close)
	return srv, cfg
}

// do sends a request with the given Authorization header ("" for none).
func do(t *testing.T, method, url, auth, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestToken(t *testing.T) {
	srv, _ := newTestServer(t)
	for _, tc := range []struct {
		name, auth, path string
		want             int
	}{
		{"none", "", testPrefix, http.StatusForbidden},
		{"wrong", "token nope", testPrefix, http.StatusForbidden},
		{"bearer scheme", "Bearer " + testToken, testPrefix, http.StatusForbidden},
		{"prefix of token", "token s3cre", testPrefix, http.StatusForbidden},
		{"outside prefix without token", "", "/elsewhere", http.StatusForbidden},
		{"right", "token " + testToken, testPrefix, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(t, http.MethodGet, srv.URL+tc.path, tc.auth, "")
			if code != tc.want {
				t.Fatalf("status = %d, want %d (body %q)", code, tc.want, body)
			}
			if tc.want == http.StatusForbidden && !strings.Contains(body, "forbidden: missing or wrong hubgate token") {
				t.Errorf("body = %q", body)
			}
		})
	}
}

func TestPrefix(t *testing.T) {
	srv, _ := newTestServer(t)
	auth := "token " + testToken
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/", http.StatusNotFound},
		{"/user/alice/notebook", http.StatusNotFound},
		{"/user/bob/notebook/", http.StatusNotFound},
		{"/user/alice/notebook/nope", http.StatusNotFound},
		{"/user/alice/notebook/", http.StatusOK},
		{"/user/alice/notebook/whoami", http.StatusOK},
		{"/user/alice/notebook/html", http.StatusOK},
		{"/user/alice/notebook/env", http.StatusOK},
		{"/user/alice/notebook/slow?ms=1", http.StatusOK},
		{"/user/alice/notebook/slow?ms=x", http.StatusBadRequest},
	} {
		t.Run(tc.path, func(t *testing.T) {
			code, body := do(t, http.MethodGet, srv.URL+tc.path, auth, "")
			if code != tc.want {
				t.Fatalf("status = %d, want %d (body %q)", code, tc.want, body)
			}
		})
	}
}

func TestWhoamiRedactsToken(t *testing.T) {
	srv, _ := newTestServer(t)
	code, body := do(t, http.MethodGet, srv.URL+testPrefix+"whoami", "token "+testToken, "")
	if code != http.StatusOK {
		t.Fatalf("status = %d", code)
	}
	var got struct {
		User    string              `json:"user"`
		BaseURL string              `json:"base_url"`
		Path    string              `json:"path"`
		Headers map[string][]string `json:"headers"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.User != "alice" || got.BaseURL != testPrefix || got.Path != testPrefix+"whoami" {
		t.Errorf("whoami = %+v", got)
	}
	if strings.Contains(body, testToken) {
		t.Errorf("whoami echoes the token: %s", body)
	}
	if a := got.Headers["Authorization"]; len(a) != 1 || a[0] != redacted {
		t.Errorf("Authorization = %q", a)
	}
}

func TestHTML(t *testing.T) {
	srv, _ := newTestServer(t)
	_, body := do(t, http.MethodGet, srv.URL+testPrefix+"html", "token "+testToken, "")
	for _, want := range []string{"<title>testapp</title>", `<h1 id="who">hello alice</h1>`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
}

func TestEnvHidesToken(t *testing.T) {
	t.Setenv("HUBGATE_TOKEN", testToken)
	t.Setenv("GIT_AUTHOR_NAME", "Alice")
	t.Setenv("UNRELATED_VAR", "x")
	srv, _ := newTestServer(t)
	_, body := do(t, http.MethodGet, srv.URL+testPrefix+"env", "token "+testToken, "")
	var got map[string]string
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got["HUBGATE_TOKEN"] != "set" || got["GIT_AUTHOR_NAME"] != "Alice" {
		t.Errorf("env = %v", got)
	}
	if _, ok := got["UNRELATED_VAR"]; ok {
		t.Errorf("env reports UNRELATED_VAR")
	}
}

func TestFiles(t *testing.T) {
	srv, _ := newTestServer(t)
	auth := "token " + testToken
	url := srv.URL + testPrefix + "files/"

	if code, _ := do(t, http.MethodGet, url+"notes.txt", auth, ""); code != http.StatusNotFound {
		t.Fatalf("missing file: status = %d, want 404", code)
	}
	if code, body := do(t, http.MethodPut, url+"notes.txt", auth, "hello volume"); code != http.StatusCreated {
		t.Fatalf("put: status = %d (%s)", code, body)
	}
	if code, body := do(t, http.MethodGet, url+"notes.txt", auth, ""); code != http.StatusOK || body != "hello volume" {
		t.Fatalf("get: status = %d body = %q", code, body)
	}
	for _, bad := range []string{"..", "a..b", ".", "a%2Fb", "%2e%2e", "x y"} {
		if code, _ := do(t, http.MethodPut, url+bad, auth, "x"); code != http.StatusBadRequest {
			t.Errorf("put %q: status = %d, want 400", bad, code)
		}
	}
	if code, body := do(t, http.MethodPut, url+"a/b/c.txt", auth, "deep"); code != http.StatusCreated {
		t.Fatalf("put in folders: status = %d (%s)", code, body)
	}
	if code, body := do(t, http.MethodGet, url+"a/b/c.txt", auth, ""); code != http.StatusOK || body != "deep" {
		t.Fatalf("get in folders: status = %d body = %q", code, body)
	}
	if code, _ := do(t, http.MethodDelete, url+"a/b/c.txt", auth, ""); code != http.StatusNoContent {
		t.Fatalf("delete: status = %d", code)
	}
	if code, _ := do(t, http.MethodGet, url+"a/b/c.txt", auth, ""); code != http.StatusNotFound {
		t.Fatalf("get after delete: status = %d, want 404", code)
	}
	if code, _ := do(t, http.MethodPut, url+"notes.txt", "", "evil"); code != http.StatusForbidden {
		t.Errorf("put without token: status = %d, want 403", code)
	}
}

func TestWebsocketEcho(t *testing.T) {
	srv, _ := newTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + testPrefix + "ws"

	if _, resp, err := websocket.Dial(ctx, wsURL, nil); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("dial without token: err = %v, resp = %v; want 403", err, resp)
	}

	c, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"token " + testToken}, "Origin": {"https://elsewhere.example"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for _, msg := range []struct {
		typ  websocket.MessageType
		data string
	}{
		{websocket.MessageText, "hello"},
		{websocket.MessageBinary, "\x00\x01\x02"},
		{websocket.MessageText, strings.Repeat("x", 100000)},
	} {
		if err := c.Write(ctx, msg.typ, []byte(msg.data)); err != nil {
			t.Fatal(err)
		}
		c.SetReadLimit(1 << 20)
		typ, data, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if typ != msg.typ || string(data) != msg.data {
			t.Errorf("echo = (%v, %d bytes), want (%v, %d bytes)", typ, len(data), msg.typ, len(msg.data))
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Errorf("close: %v", err)
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string {
		return func(k string) string { return m[k] }
	}
	if _, err := configFromEnv(env(map[string]string{})); err == nil {
		t.Error("empty token accepted")
	}
	if _, err := configFromEnv(env(map[string]string{"HUBGATE_TOKEN": "x", "HUBGATE_BASE_URL": "/user/a"})); err == nil {
		t.Error("base URL without trailing slash accepted")
	}
	cfg, err := configFromEnv(env(map[string]string{"HUBGATE_TOKEN": "x", "HUBGATE_BASE_URL": "/user/a/"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Port != "8888" || cfg.Home != "/home/hubgate" {
		t.Errorf("defaults = %+v", cfg)
	}
}
