package egress

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hubgate/hubgate/policies"
)

type testDeriver []byte

func (k testDeriver) MAC(parts ...string) []byte {
	m := hmac.New(sha256.New, k)
	m.Write([]byte(strings.Join(parts, "\x00")))
	return m.Sum(nil)
}

type testCallers map[string]Caller

func (c testCallers) Caller(_ context.Context, user, server, _ string) (Caller, error) {
	if v, ok := c[user+"/"+server]; ok {
		return v, nil
	}
	return Caller{}, errors.New("not running")
}

const testPolicy = `images:
  nb: {image: x}
teams:
  research:
    members: [alice]
    images: [nb]
    egress: [allowed.test, "plain.test:80"]
  coders:
    groups: ["oidc:coders"]
    images: [nb]
    repos: [org/analysis]
`

type fixture struct {
	proxyURL func(user, server, nonce string) *url.URL
	policy   atomic.Pointer[policies.Policy]
	audit    *observer.ObservedLogs
	view     *View
	server   *Server
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{}
	pol, err := policies.Parse("policy.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	f.policy.Store(pol)
	// The allowed HTTPS host and a plain HTTP one, on loopback, reached
	// through the admin's resolve entries.
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from "+r.Host)
	}))
	t.Cleanup(tlsSrv.Close)
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "" {
			t.Errorf("the proxy credential reached the upstream")
		}
		io.WriteString(w, "plain "+r.URL.Path)
	}))
	t.Cleanup(plain.Close)
	core, logs := observer.New(zapcore.InfoLevel)
	f.audit = logs
	key := testDeriver("k")
	callers := testCallers{
		"alice/nb": {Nonce: "n1", IP: netip.MustParseAddr("127.0.0.1")},
		"bob/nb":   {Nonce: "n2", IP: netip.MustParseAddr("127.0.0.1"), Groups: []string{"oidc:coders"}},
		"eve/nb":   {Nonce: "n3", IP: netip.MustParseAddr("10.9.9.9")},
	}
	proxy := NewProxy()
	f.view = &View{
		Credentials: key, Callers: callers,
		Policy: f.policy.Load, Logger: zap.NewNop(), Audit: zap.New(core),
		RepoHosts: []string{"git.test:443"},
		Resolve: map[string]string{
			"allowed.test:443": strings.TrimPrefix(tlsSrv.URL, "https://"),
			"git.test:443":     strings.TrimPrefix(tlsSrv.URL, "https://"),
			"plain.test:80":    strings.TrimPrefix(plain.URL, "http://"),
		},
	}
	f.server = NewServer(proxy, nil)
	f.server.AddView(f.view)
	if err := f.server.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.server.Destruct() })
	f.proxyURL = func(user, server, nonce string) *url.URL {
		name, pass := Credential(key, user, server, nonce)
		return &url.URL{Scheme: "http", User: url.UserPassword(name, pass), Host: f.server.Addr()}
	}
	return f
}

func client(proxy *url.URL) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:           http.ProxyURL(proxy),
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
}

func get(t *testing.T, c *http.Client, u string) (int, string, error) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func TestProxyAllowsAndRefuses(t *testing.T) {
	f := newFixture(t)
	alice := client(f.proxyURL("alice", "nb", "n1"))

	if code, body, err := get(t, alice, "https://allowed.test/"); err != nil || code != 200 || body != "hello from allowed.test" {
		t.Fatalf("allowed HTTPS: %d %q %v", code, body, err)
	}
	if code, body, err := get(t, alice, "http://plain.test/x"); err != nil || code != 200 || body != "plain /x" {
		t.Fatalf("allowed plain HTTP: %d %q %v", code, body, err)
	}
	// A refused tunnel: the message is the status line, as tools show it.
	_, _, err := get(t, alice, "https://example.com/")
	if err == nil || !strings.Contains(err.Error(), "egress to example.com:443 is not allowed for team research") {
		t.Fatalf("refused CONNECT: %v", err)
	}
	code, body, err := get(t, alice, "http://example.com/")
	if err != nil || code != 403 || !strings.Contains(body, "egress to example.com:80 is not allowed for team research") {
		t.Fatalf("refused plain HTTP: %d %q %v", code, body, err)
	}
	// The git host only for teams with repos; bob is in "coders" by group.
	if _, _, err := get(t, alice, "https://git.test/"); err == nil {
		t.Error("git host allowed to a user without repos")
	}
	bob := client(f.proxyURL("bob", "nb", "n2"))
	if code, _, err := get(t, bob, "https://git.test/"); err != nil || code != 200 {
		t.Errorf("git host for a team with repos: %d %v", code, err)
	}
	refusals := f.audit.FilterMessage("egress refused").All()
	if len(refusals) != 3 {
		t.Fatalf("%d refusals audited, want 3", len(refusals))
	}
	fields := refusals[0].ContextMap()
	if fields["user"] != "alice" || fields["server"] != "nb" || fields["host"] != "example.com" || fields["port"] != int64(443) {
		t.Errorf("audit record %v", fields)
	}

	// A reload that drops the host refuses the next request on a kept-alive
	// connection at once.
	code, _, _ = get(t, alice, "http://plain.test/again")
	if code != 200 {
		t.Fatalf("before reload: %d", code)
	}
	pol, err := policies.Parse("policy.yaml", []byte(strings.Replace(testPolicy, `"plain.test:80"`, `"other.test:80"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	f.policy.Store(pol)
	if code, body, _ := get(t, alice, "http://plain.test/again"); code != 403 || !strings.Contains(body, "not allowed for team research") {
		t.Errorf("after reload: %d %q", code, body)
	}
}

func TestProxyCredentials(t *testing.T) {
	f := newFixture(t)
	for name, u := range map[string]*url.URL{
		"no credentials":        {Scheme: "http", Host: f.server.Addr()},
		"wrong password":        {Scheme: "http", User: url.UserPassword(f.proxyURL("alice", "nb", "n1").User.Username(), "00"), Host: f.server.Addr()},
		"an earlier container":  f.proxyURL("alice", "nb", "old"),
		"a stopped server":      f.proxyURL("carol", "nb", "n9"),
		"from another address":  f.proxyURL("eve", "nb", "n3"),
		"another user's server": {Scheme: "http", User: url.UserPassword(f.proxyURL("bob", "nb", "n2").User.Username(), mustPass(f.proxyURL("alice", "nb", "n1"))), Host: f.server.Addr()},
	} {
		code, body, err := get(t, client(u), "http://plain.test/")
		if err != nil || code != http.StatusProxyAuthRequired || !strings.Contains(body, "hubgate egress proxy: ") {
			t.Errorf("%s: %d %q %v", name, code, body, err)
		}
	}
	for _, e := range f.audit.All() {
		for k, v := range e.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, mustPass(f.proxyURL("alice", "nb", "n1"))) {
				t.Errorf("audit field %s holds the credential", k)
			}
		}
	}
}

func mustPass(u *url.URL) string { p, _ := u.User.Password(); return p }

func TestProxyNeverConnectsToTheGateway(t *testing.T) {
	f := newFixture(t)
	// Allow a name that is not in resolve: it is dialled as written, and
	// loopback (the gateway host itself) is refused.
	pol, err := policies.Parse("policy.yaml", []byte(strings.Replace(testPolicy, `"plain.test:80"`, `"localhost:2019", "127.0.0.1:2019"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	f.policy.Store(pol)
	alice := client(f.proxyURL("alice", "nb", "n1"))
	for _, u := range []string{"http://localhost:2019/config/", "http://127.0.0.1:2019/config/"} {
		code, body, err := get(t, alice, u)
		if err != nil || code != http.StatusBadGateway || !strings.Contains(body, "never connects to") {
			t.Errorf("%s: %d %q %v", u, code, body, err)
		}
	}
}

func TestProxyIsNotAWebServer(t *testing.T) {
	f := newFixture(t)
	conn, err := net.Dial("tcp", f.server.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(b), "egress proxy") {
		t.Errorf("%d %q", resp.StatusCode, b)
	}
}
