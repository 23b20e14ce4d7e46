package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/reqkind"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
)

// varService hands a team service's upstream to the service proxy's
// upstream source.
const varService = "hubgate.service"

// ServiceRoute is a team service as the proxy needs it (from the policy).
type ServiceRoute struct {
	// Name is the service's name; its prefix is /services/{name}/.
	Name string
	// Scheme ("http" or "https") and Dial (host:port) reach it.
	Scheme, Dial string
	// StripPrefix sends the path without /services/{name}.
	StripPrefix bool
}

// Prefix is the service's URL prefix, with a trailing slash.
func (s ServiceRoute) Prefix() string { return "/services/" + s.Name + "/" }

// ServiceProxy sends authorized requests to team services through Caddy's
// reverse proxy, with the same header hygiene as user servers: identity
// and forwarding headers a client sent are removed by rule, hubgate's
// cookies are not forwarded, X-Hubgate-User and the signed assertion are
// added; the service's answer may not set hubgate's cookies nor redirect
// out of its prefix. Websockets are registered (target "service:{name}")
// so logout, revocation and policy changes close them.
type ServiceProxy struct {
	rt         *Runtime
	plain, tls *reverseproxy.Handler
	cfg        ProxyConfig
	rules      *headerRules
	logger     *zap.Logger
	upstreams  sync.Map // dial -> []*reverseproxy.Upstream
}

// NewServiceProxy provisions the reverse proxies (plain HTTP and TLS, the
// system's roots) for one config.
func NewServiceProxy(ctx caddy.Context, rt *Runtime, cfg ProxyConfig) (*ServiceProxy, error) {
	p := &ServiceProxy{rt: rt, cfg: cfg, rules: newHeaderRules(cfg.StripHeaders), logger: ctx.Logger()}
	for _, tlsOn := range []bool{false, true} {
		transport := &reverseproxy.HTTPTransport{
			DialTimeout: caddy.Duration(5 * time.Second),
			KeepAlive:   &reverseproxy.KeepAlive{MaxIdleConnsPerHost: cfg.MaxIdleConnsPerHost},
		}
		if tlsOn {
			transport.TLS = &reverseproxy.TLSConfig{}
		}
		if err := transport.Provision(ctx); err != nil {
			return nil, fmt.Errorf("provision service transport: %w", err)
		}
		// Caddy's flushing (streams at once, see NewProxy).
		rp := &reverseproxy.Handler{Transport: transport, DynamicUpstreams: serviceSource{}}
		if err := provisionReverseProxy(ctx, rp); err != nil {
			return nil, fmt.Errorf("provision service proxy: %w", err)
		}
		if tlsOn {
			p.tls = rp
		} else {
			p.plain = rp
		}
	}
	return p, nil
}

// Cleanup releases the reverse proxies.
func (p *ServiceProxy) Cleanup() error {
	return errors.Join(p.plain.Cleanup(), p.tls.Cleanup())
}

type serviceSource struct{}

// GetUpstreams implements reverseproxy.UpstreamSource.
func (serviceSource) GetUpstreams(r *http.Request) ([]*reverseproxy.Upstream, error) {
	if ups, ok := caddyhttp.GetVar(r.Context(), varService).([]*reverseproxy.Upstream); ok && len(ups) > 0 {
		return ups, nil
	}
	return nil, errors.New("no hubgate service for this request")
}

// Serve proxies one request to svc for v.
func (p *ServiceProxy) Serve(w http.ResponseWriter, r *http.Request, svc ServiceRoute, v Visitor) error {
	p.rules.apply(r)
	session.StripOurCookies(r.Header)
	r.Header.Set("X-Hubgate-User", v.User)
	if p.cfg.AssertionHeader != "" {
		r.Header.Del(p.cfg.AssertionHeader)
		if v.Assertion != "" {
			r.Header.Set(p.cfg.AssertionHeader, v.Assertion)
		}
	}
	prefix := svc.Prefix()
	if svc.StripPrefix {
		rest := "/" + strings.TrimPrefix(r.URL.Path, prefix)
		r.URL.Path = rest
		if r.URL.RawPath != "" {
			r.URL.RawPath = "/" + strings.TrimPrefix(r.URL.RawPath, prefix)
		}
		r.Header.Set("X-Forwarded-Prefix", strings.TrimSuffix(prefix, "/"))
	}
	ups, _ := p.upstreams.LoadOrStore(svc.Dial, []*reverseproxy.Upstream{{Dial: svc.Dial}})
	caddyhttp.SetVar(r.Context(), varService, ups)
	rf := &responseFilter{ResponseWriter: w, host: r.Host, prefix: prefix}
	w = rf
	if svc.StripPrefix {
		w = &prefixRedirects{ResponseWriter: w, prefix: strings.TrimSuffix(prefix, "/")}
	}
	if reqkind.IsUpgrade(r) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		defer p.rt.streams.add(v, policies.ServiceTarget+svc.Name, cancel)()
		if !v.Expires.IsZero() {
			t := time.AfterFunc(time.Until(v.Expires), cancel)
			defer t.Stop()
		}
		r = r.WithContext(ctx)
	}
	rp := p.plain
	if svc.Scheme == "https" {
		rp = p.tls
	}
	err := rp.ServeHTTP(w, r, nil)
	if rf.dropped > 0 {
		p.logger.Warn("service response headers dropped: hubgate cookies or redirects out of the service",
			zap.String("service", svc.Name), zap.String("user", v.User), zap.Int("dropped", rf.dropped))
	}
	return err
}

// prefixRedirects puts the stripped prefix back on a service's
// root-relative redirects ("/login" -> "/services/x/login"), as a
// path-stripping proxy must; responseFilter then checks the result.
type prefixRedirects struct {
	http.ResponseWriter
	prefix string
	done   bool
}

func (p *prefixRedirects) fix() {
	if p.done {
		return
	}
	p.done = true
	hdr := p.ResponseWriter.Header()
	if loc := hdr.Get("Location"); strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "//") && !strings.HasPrefix(loc, p.prefix+"/") {
		hdr.Set("Location", p.prefix+loc)
	}
}

func (p *prefixRedirects) WriteHeader(status int) {
	p.fix()
	p.ResponseWriter.WriteHeader(status)
}

func (p *prefixRedirects) Write(b []byte) (int, error) {
	p.fix()
	return p.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (p *prefixRedirects) Unwrap() http.ResponseWriter { return p.ResponseWriter }
