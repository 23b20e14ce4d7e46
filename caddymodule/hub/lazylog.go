package hub

import (
	"errors"
	"reflect"
	"unsafe"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Caddy's reverse proxy (v2.11) makes, on every request, a child logger
// with the upstream, the duration and the whole request as fields
// (`h.logger.With(...)` in reverseProxy) for its debug lines. zap's
// cores encode With fields at once, so every request pays for the JSON
// encoding of its request line and headers even though, at the default
// INFO level, no debug line is ever written: 4–6 µs per request on a
// quiet machine (10–14 on a busy one; bench/PROFILE.md), 4–6% of the
// proxy's CPU. Plain Caddy pays it too; hubgate's own proxies need not. provisionReverseProxy gives them a
// logger whose With is lazy (zapcore.NewLazyWith): the fields are encoded
// the first time an entry of an enabled level is checked on the child,
// so with debug on the lines are the same, and with it off nothing is
// encoded.

// lazyWithCore is a core whose With defers the encoding of the fields
// until an entry is written through the child.
type lazyWithCore struct{ zapcore.Core }

// With implements zapcore.Core.
func (c lazyWithCore) With(fields []zapcore.Field) zapcore.Core {
	return zapcore.NewLazyWith(c.Core, fields)
}

// provisionReverseProxy provisions rp and then swaps its logger for the
// same logger with lazy With fields. The logger is an unexported field of
// reverseproxy.Handler: if a Caddy release renames it, the proxy keeps
// Caddy's eager logger, a warning says so, and TestLazyProxyLogger fails.
func provisionReverseProxy(ctx caddy.Context, rp *reverseproxy.Handler) error {
	if err := rp.Provision(ctx); err != nil {
		return err
	}
	if err := setLazyLogger(rp); err != nil {
		ctx.Logger().Warn("reverse proxy keeps its eager logger (costs CPU per request)", zap.Error(err))
	}
	return nil
}

// proxyLogger is the address of rp's unexported logger field.
func proxyLogger(rp *reverseproxy.Handler) (**zap.Logger, error) {
	f := reflect.ValueOf(rp).Elem().FieldByName("logger")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*zap.Logger]() {
		return nil, errors.New("reverseproxy.Handler has no field logger of type *zap.Logger")
	}
	return (**zap.Logger)(unsafe.Pointer(f.UnsafeAddr())), nil
}

// setLazyLogger wraps the core of rp's logger in lazyWithCore.
func setLazyLogger(rp *reverseproxy.Handler) error {
	ptr, err := proxyLogger(rp)
	if err != nil {
		return err
	}
	if *ptr == nil {
		return errors.New("reverseproxy.Handler's logger is not set after Provision")
	}
	*ptr = (*ptr).WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return lazyWithCore{c} }))
	return nil
}
