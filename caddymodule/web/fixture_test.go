package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/hubgate/hubgate/caddymodule/hub"
	"github.com/hubgate/hubgate/caddymodule/login"
	"github.com/hubgate/hubgate/caddymodule/pages"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/caddymodule/tokens"
	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/spawner/spawnertest"
)

// fixture is the whole request path in process: the real site, login,
// runtime and Caddy reverse proxy, with an in-memory spawner whose
// "containers" are loopback HTTP servers.
type fixture struct {
	site    *Site
	login   *login.Authenticator
	hub     *hub.Runtime
	spawner *spawnertest.Spawner
	codec   *session.Codec
	policy  string // the policy file
	watcher *policies.Watcher
	tokens  *tokens.Store
}

const testPolicy = `admins: [admin]
accounts:
  alice: %q
  admin: %q
images:
  notebook: {image: "hubgate/testapp:latest", port: 8888, description: "Test app"}
  rstudio: {image: "hubgate/testapp:latest", port: 8888}
teams:
  research:
    members: [alice, bob, admin]
    images: [notebook]
`

var (
	caddyOnce sync.Once
	caddyCtx  caddy.Context
	hashOnce  sync.Once
	testHash  string
)

// caddyContext is a context of a running (empty) Caddy config, which the
// reverse proxy needs to provision; nothing listens, nothing is persisted.
func caddyContext(t testing.TB) caddy.Context {
	caddyOnce.Do(func() {
		if err := caddy.Load([]byte(`{"admin":{"disabled":true,"config":{"persist":false}},"logging":{"logs":{"default":{"level":"ERROR"}}}}`), true); err != nil {
			t.Fatal(err)
		}
		caddyCtx, _ = caddy.NewContext(caddy.ActiveContext())
	})
	return caddyCtx
}

func passwordHash() string {
	hashOnce.Do(func() {
		h, _ := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
		testHash = string(h)
	})
	return testHash
}

func newFixture(t testing.TB, startWait time.Duration) *fixture {
	return newFixtureWithStorage(t, startWait, nil)
}

func newFixtureWithStorage(t testing.TB, startWait time.Duration, store certmagic.Storage) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{spawner: spawnertest.New(), policy: filepath.Join(dir, "policy.yaml")}
	f.writePolicy(t, testPolicy, passwordHash(), passwordHash())
	var err error
	if f.watcher, err = policies.NewWatcher(zap.NewNop(), []string{f.policy}, nil); err != nil {
		t.Fatal(err)
	}
	if f.codec, err = session.NewCodec(bytes.Repeat([]byte{7}, 32)); err != nil {
		t.Fatal(err)
	}
	if f.hub, err = hub.New(hub.Options{Spawner: f.spawner, Tokens: f.codec}, hub.Config{StartTimeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.hub.Destruct(); _ = f.spawner.Close() })
	if store == nil {
		store = &certmagic.FileStorage{Path: filepath.Join(dir, "storage")}
	}
	pg, err := pages.New()
	if err != nil {
		t.Fatal(err)
	}
	f.login, err = login.New(login.Config{SessionTTL: time.Hour, Local: true, FailuresPerUser: 5, FailuresPerIP: 20, FailureWindow: time.Minute},
		login.Options{
			Codec: f.codec, State: login.NewState(store, "hubgate/t"), Policy: f.watcher.Current, Pages: pg,
			Logger: zap.NewNop(), Audit: zap.NewNop(), Seen: f.hub.MarkSeen,
			SessionEnded: f.hub.Streams().CloseSession, AccessLost: f.hub.Streams().CloseUser,
		})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.login.Close)
	proxy, err := hub.NewProxy(caddyContext(t), f.hub, hub.ProxyConfig{MaxIdleConnsPerHost: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Cleanup() })
	services, err := hub.NewServiceProxy(caddyContext(t), f.hub, hub.ProxyConfig{MaxIdleConnsPerHost: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = services.Cleanup() })
	f.tokens = tokens.New(store, "hubgate/t", time.Minute)
	f.site = New(Options{
		Login: f.login, Hub: f.hub, Proxy: proxy, Pages: pg, Policy: f.watcher.Current,
		PolicyStatus: f.watcher.LastResult, Logger: zap.NewNop(), Audit: zap.NewNop(), StartWait: startWait,
		Tokens: f.tokens, Services: services,
	})
	return f
}

func (f *fixture) writePolicy(t testing.TB, format string, args ...any) {
	t.Helper()
	body := format
	if len(args) > 0 {
		body = sprintf(format, args...)
	}
	if err := os.WriteFile(f.policy, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// cookie is the session cookie of a fresh login of user.
func (f *fixture) cookie(t testing.TB, user string) (string, *session.Session) {
	t.Helper()
	now := time.Now()
	s := session.Session{ID: session.NewID(), User: user, Provider: "oidc-test", IssuedAt: now.Unix(), Expires: now.Add(time.Hour).Unix()}
	sealed, err := f.codec.Seal(session.PurposeSession, s)
	if err != nil {
		t.Fatal(err)
	}
	return session.SessionCookie + "=" + sealed, &s
}

// do serves one request through the site as Caddy would hand it over.
func (f *fixture) do(t testing.TB, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, new(caddyhttp.Server))
	if r.RemoteAddr == "" {
		r.RemoteAddr = "127.0.0.1:40000"
	}
	if err := f.site.ServeHTTP(w, r); err != nil {
		if he, ok := err.(caddyhttp.HandlerError); ok {
			w.Code = he.StatusCode
		} else {
			t.Fatalf("%s %s: %v", r.Method, r.URL, err)
		}
	}
	return w
}

// request builds a request with the given cookie and headers.
func request(method, target, cookie string, hdr ...string) *http.Request {
	r := httptest.NewRequest(method, "https://hub.test"+target, nil)
	if u, err := url.Parse("https://hub.test" + target); err == nil {
		r.URL = u
		r.RequestURI = target
	}
	if cookie != "" {
		r.Header.Set("Cookie", cookie)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	return r
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

func configWithStarts(n int) hub.Config {
	return hub.Config{MaxConcurrentStarts: n, StartTimeout: 10 * time.Second}
}

func ioNopCloser(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }

// brokenStorage is a Caddy storage that always fails, as a storage
// server that is down.
type brokenStorage struct{ certmagic.Storage }

func (brokenStorage) List(context.Context, string, bool) ([]string, error) {
	return nil, errors.New("storage down")
}
func (brokenStorage) Store(context.Context, string, []byte) error { return errors.New("storage down") }
