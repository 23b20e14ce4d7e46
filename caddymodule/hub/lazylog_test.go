package hub

import (
	"bytes"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// countingObject counts how often it is encoded.
type countingObject struct{ n *int }

func (c countingObject) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	*c.n++
	enc.AddString("method", "GET")
	return nil
}

// TestLazyWithCoreDefersEncoding shows what the lazy core buys: a child
// logger's fields are not encoded while nothing is written at an enabled
// level (Caddy's eager core encodes them at With), and are written as
// before once an entry is.
func TestLazyWithCoreDefersEncoding(t *testing.T) {
	newCore := func(buf *bytes.Buffer) zapcore.Core {
		return zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(buf), zapcore.InfoLevel)
	}
	var eagerBuf, lazyBuf bytes.Buffer
	var eager, lazy int
	zap.New(newCore(&eagerBuf)).With(zap.Object("request", countingObject{&eager})).Debug("upstream roundtrip")
	if eager != 1 {
		t.Fatalf("eager core encoded the fields %d times at With, want 1", eager)
	}
	l := zap.New(lazyWithCore{newCore(&lazyBuf)}).With(zap.Object("request", countingObject{&lazy}))
	l.Debug("upstream roundtrip")
	if c := l.Check(zapcore.DebugLevel, "upstream roundtrip"); c != nil {
		t.Fatal("debug entry enabled at INFO")
	}
	if lazy != 0 || lazyBuf.Len() != 0 {
		t.Fatalf("lazy core encoded the fields %d times (output %q) with no entry written", lazy, lazyBuf.String())
	}
	l.Info("aborting with incomplete response")
	if lazy != 1 || !strings.Contains(lazyBuf.String(), `"request":{"method":"GET"}`) {
		t.Fatalf("after an INFO entry: encoded %d times, output %q; want the request field once", lazy, lazyBuf.String())
	}
}

// TestLazyProxyLogger fails when a Caddy release renames the reverse
// proxy's logger field: hubgate's proxies would silently go back to
// encoding a debug context on every request.
func TestLazyProxyLogger(t *testing.T) {
	if err := caddy.Load([]byte(`{"admin":{"disabled":true,"config":{"persist":false}},"logging":{"logs":{"default":{"level":"ERROR"}}}}`), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	ctx, cancel := caddy.NewContext(caddy.ActiveContext())
	defer cancel()
	rp := &reverseproxy.Handler{Upstreams: reverseproxy.UpstreamPool{{Dial: "127.0.0.1:1"}}}
	if err := provisionReverseProxy(ctx, rp); err != nil {
		t.Fatal(err)
	}
	ptr, err := proxyLogger(rp)
	if err != nil {
		t.Fatal(err)
	}
	if l := *ptr; l == nil {
		t.Fatal("proxy logger not set")
	} else if _, ok := l.Core().(lazyWithCore); !ok {
		t.Fatalf("proxy logger core is %T, want lazyWithCore", l.Core())
	}
}
