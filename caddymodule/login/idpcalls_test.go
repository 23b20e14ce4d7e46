package login

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/idp"
	"github.com/hubgate/hubgate/caddymodule/pages"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
)

// countingProvider is an identity provider that counts the calls hubgate
// makes to it with its client credentials.
type countingProvider struct{ starts, exchanges atomic.Int64 }

func (*countingProvider) Name() string  { return "op" }
func (*countingProvider) Kind() string  { return idp.KindOIDC }
func (*countingProvider) Label() string { return "Log in with op" }
func (p *countingProvider) AuthCodeURL(context.Context, idp.Flow) (string, error) {
	p.starts.Add(1)
	return "https://op.test/authorize", nil
}
func (p *countingProvider) Exchange(context.Context, string, idp.Flow) (*idp.Identity, error) {
	p.exchanges.Add(1)
	return nil, idp.ErrUnavailable
}

// TestProviderCallsBoundedPerIP (L6): one client IP cannot make the
// gateway start unlimited logins at the identity provider; another IP is
// not affected.
func TestProviderCallsBoundedPerIP(t *testing.T) {
	codec, err := session.NewCodec(bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	pg, err := pages.New()
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policies.Parse("p.yaml", []byte("admins: [admin]\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProvider{}
	a, err := New(Config{SessionTTL: time.Hour, Providers: []idp.Provider{p}, FailuresPerUser: 5, FailuresPerIP: 20, FailureWindow: time.Minute},
		Options{Codec: codec, State: NewState(&certmagic.FileStorage{Path: t.TempDir()}, "hubgate/t"),
			Policy: func() *policies.Policy { return pol }, Pages: pg, Logger: zap.NewNop(), Audit: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	start := func(ip string) int {
		r := httptest.NewRequest(http.MethodGet, "https://hub.test/hub/oauth_start/op", nil)
		r.RemoteAddr = ip + ":1234"
		w := httptest.NewRecorder()
		if err := a.ServeOAuthStart(w, r, "op"); err != nil {
			t.Fatal(err)
		}
		return w.Code
	}
	limited := 0
	for range idpCallsPerIP + 50 {
		if start("192.0.2.1") == http.StatusTooManyRequests {
			limited++
		}
	}
	if p.starts.Load() != idpCallsPerIP || limited != 50 {
		t.Fatalf("%d starts reached the provider and %d were refused, want %d and 50", p.starts.Load(), limited, idpCallsPerIP)
	}
	if code := start("192.0.2.2"); code != http.StatusFound {
		t.Fatalf("another IP's login start: %d", code)
	}
}
