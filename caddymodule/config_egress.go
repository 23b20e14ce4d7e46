package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/egress"
	"github.com/hubgate/hubgate/caddymodule/hub"
	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/spawner"
	"github.com/hubgate/hubgate/spawner/docker"
)

// This file holds the egress block: its config, and the glue that runs
// the egress proxy (caddymodule/egress) for the deployment.

// DefaultEgressPort is the egress proxy's default port.
const DefaultEgressPort = 3128

// EgressConfig turns on the per-team egress allow-list. User containers
// then sit on a network with no route out (on Docker an internal network,
// created so by hubgate; on Kubernetes deploy/kubernetes's NetworkPolicy),
// and their only way out is hubgate's egress proxy, which lets each
// container reach only the hosts and ports its user's teams list under
// egress: in the policy (a team without egress: gets none), plus the git
// host for users whose teams have repos. Containers get HTTP_PROXY,
// HTTPS_PROXY and NO_PROXY (and the lower-case forms) with a credential
// of their own. Every refusal is in the audit log.
//
// Without this block containers have the network access Docker or the
// cluster gives them, and egress: rules in the policy are not enforced
// (a warning says so).
type EgressConfig struct {
	// Port is the TCP port the proxy listens on. On Docker the proxy
	// listens on the host's address on the deployment's network (the
	// network's gateway), which only that network's containers reach.
	// Default: 3128.
	Port int `json:"port,omitempty"`

	// Listen (Kubernetes only) is the address the proxy listens on inside
	// the gateway's pod, such as ":3128" or "{env.POD_IP}:3128". Keep it
	// off any Service that is reachable from outside the cluster.
	// Default: ":" + Port.
	Listen string `json:"listen,omitempty"`

	// ProxyHost (Kubernetes only, required there) is the name or address
	// user pods reach the proxy at: a ClusterIP Service in front of the
	// gateway pods' egress port, such as "hubgate-egress.hubgate.svc".
	ProxyHost string `json:"proxy_host,omitempty"`

	// Resolve maps "host:port" to the "ip:port" the proxy connects to for
	// it instead of resolving the name (as curl's --resolve does), for
	// hosts without public DNS. The policy still decides who may reach
	// the name. The proxy otherwise never connects to loopback,
	// link-local or the gateway's own addresses, nor into the containers'
	// network; the targets given here are trusted.
	Resolve map[string]string `json:"resolve,omitempty"`

	// NoProxy adds entries to the containers' NO_PROXY (which always
	// holds localhost, 127.0.0.1 and ::1).
	NoProxy []string `json:"no_proxy,omitempty"`
}

func (e *EgressConfig) applyDefaults() {
	if e.Port == 0 {
		e.Port = DefaultEgressPort
	}
}

func (e *EgressConfig) validate(kubernetes bool) error {
	if e.Port < 1 || e.Port > 65535 {
		return fmt.Errorf("hubgate: egress port %d out of range 1 to 65535", e.Port)
	}
	if kubernetes && e.ProxyHost == "" {
		return errors.New("hubgate: egress on Kubernetes needs proxy_host: the name user pods reach the proxy at (a Service in front of the gateway's egress port)")
	}
	if !kubernetes && (e.Listen != "" || e.ProxyHost != "") {
		return errors.New("hubgate: egress listen and proxy_host are for Kubernetes; on Docker the proxy listens on the network's gateway address at port")
	}
	for from, to := range e.Resolve {
		if _, err := policies.ParseEgressRule(from); err != nil || !strings.Contains(from, ":") {
			return fmt.Errorf("hubgate: egress resolve %q: want host:port", from)
		}
		if _, err := netip.ParseAddrPort(to); err != nil {
			return fmt.Errorf("hubgate: egress resolve %s: %q is not an ip:port", from, to)
		}
	}
	for _, n := range e.NoProxy {
		if n == "" || strings.ContainsAny(n, ", \t\r\n") {
			return fmt.Errorf("hubgate: egress no_proxy entry %q: one host, domain or address per entry", n)
		}
	}
	return nil
}

// unmarshalEgress reads the egress block:
//
//	egress {
//		port <port>                       # default 3128
//		listen <address>                  # Kubernetes: where the gateway pod listens
//		proxy_host <host>                 # Kubernetes: the Service user pods reach
//		resolve <host:port> <ip:port>     # repeatable
//		no_proxy <host>...
//	}
//
// A bare `egress` turns the proxy on with the defaults.
func (h *Handler) unmarshalEgress(d *caddyfile.Dispenser) error {
	if h.Egress != nil {
		return d.Err("egress given twice")
	}
	e := new(EgressConfig)
	h.Egress = e
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		args := d.RemainingArgs()
		switch opt {
		case "port":
			if len(args) != 1 {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(args[0])
			if err != nil {
				return d.Errf("egress port %q: %v", args[0], err)
			}
			e.Port = n
		case "listen", "proxy_host":
			if len(args) != 1 {
				return d.ArgErr()
			}
			if opt == "listen" {
				e.Listen = args[0]
			} else {
				e.ProxyHost = args[0]
			}
		case "resolve":
			if len(args) != 2 {
				return d.Errf("egress resolve takes <host:port> <ip:port>")
			}
			if e.Resolve == nil {
				e.Resolve = map[string]string{}
			}
			e.Resolve[args[0]] = args[1]
		case "no_proxy":
			if len(args) == 0 {
				return d.ArgErr()
			}
			e.NoProxy = append(e.NoProxy, args...)
		default:
			return d.Errf("unrecognized egress option %q", opt)
		}
	}
	return nil
}

// egressServers holds each deployment's egress proxy across config
// reloads, keyed by the deployment and where it listens, so that a reload
// neither rebinds the port nor cuts an open tunnel.
var egressServers = caddy.NewUsagePool()

// egressProxy is one config's use of the deployment's egress proxy.
type egressProxy struct {
	h          *Handler
	key        string
	tokens     egress.Deriver
	server     *egress.Server
	removeView func()
}

// newEgress finds or makes the deployment's egress proxy. It serves this
// config once start gives it the config's view.
func (h *Handler) newEgress(tokens egress.Deriver) (*egressProxy, error) {
	listen := ""
	if h.Kubernetes != nil {
		listen = h.Egress.Listen
		if listen == "" {
			listen = ":" + strconv.Itoa(h.Egress.Port)
		}
		listen = caddy.NewReplacer().ReplaceAll(listen, "")
	}
	key := fmt.Sprintf("%s|%s|%d", h.Name, listen, h.Egress.Port)
	val, _, err := egressServers.LoadOrNew(key, func() (caddy.Destructor, error) {
		return egress.NewServer(egress.NewProxy(), caddy.Log().Named("hubgate.egress")), nil
	})
	if err != nil {
		return nil, fmt.Errorf("hubgate: egress proxy: %w", err)
	}
	return &egressProxy{h: h, key: key, tokens: tokens, server: val.(*egress.Server), removeView: func() {}}, nil
}

// egressEnv is the runtime's EgressEnv hook: nil without an egress block.
func (h *Handler) egressEnv() func(context.Context, spawner.Spec) (map[string]string, error) {
	if h.egress == nil {
		return nil
	}
	return h.egress.env
}

// start gives the proxy this config's view and makes it listen: on
// Kubernetes at once; on Docker as soon as the network exists (at once
// when it does, otherwise when the first start creates it).
func (p *egressProxy) start(ctx caddy.Context, audit *zap.Logger) error {
	h := p.h
	p.removeView = p.server.AddView(&egress.View{
		Credentials: p.tokens,
		Callers:     egressCallers{rt: h.runtime},
		Policy:      h.watcher.Current,
		Logger:      h.logger.Named("egress"),
		Audit:       audit,
		RepoHosts:   gitHosts(h.login.GitURL()),
		Resolve:     lowerKeys(h.Egress.Resolve),
	})
	if h.Kubernetes != nil {
		listen := h.Egress.Listen
		if listen == "" {
			listen = ":" + strconv.Itoa(h.Egress.Port)
		}
		return p.server.Listen(caddy.NewReplacer().ReplaceAll(listen, ""))
	}
	go func() {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := p.dockerAddr(lctx, ""); err != nil && !errors.Is(err, spawner.ErrNotFound) {
			h.logger.Warn("egress proxy not listening yet; the next start tries again", zap.Error(err))
		}
	}()
	return nil
}

// dockerAddr makes sure the proxy listens on the Docker network's gateway
// and returns that address. With image set, a missing network is created.
func (p *egressProxy) dockerAddr(ctx context.Context, image string) (string, error) {
	sp, ok := p.h.runtime.Spawner().(*docker.Spawner)
	if !ok {
		return "", errors.New("the egress proxy on this engine needs proxy_host")
	}
	gw, subnet, err := sp.NetworkGateway(ctx, image)
	if err != nil {
		return "", err
	}
	addr := net.JoinHostPort(gw.String(), strconv.Itoa(p.h.Egress.Port))
	p.server.Proxy().SetDeny([]netip.Prefix{subnet})
	if err := p.server.Listen(addr); err != nil {
		return "", err
	}
	return addr, nil
}

// env is the egress environment of a container about to be created.
func (p *egressProxy) env(ctx context.Context, spec spawner.Spec) (map[string]string, error) {
	var addr string
	if p.h.Kubernetes != nil {
		addr = net.JoinHostPort(p.h.Egress.ProxyHost, strconv.Itoa(p.h.Egress.Port))
	} else {
		var err error
		if addr, err = p.dockerAddr(ctx, spec.Image); err != nil {
			return nil, err
		}
	}
	name, pass := egress.Credential(p.tokens, spec.User, spec.Server, spec.Nonce)
	u := (&url.URL{Scheme: "http", User: url.UserPassword(name, pass), Host: addr}).String()
	noProxy := strings.Join(append([]string{"localhost", "127.0.0.1", "::1"}, p.h.Egress.NoProxy...), ",")
	return map[string]string{
		"HTTP_PROXY": u, "HTTPS_PROXY": u, "http_proxy": u, "https_proxy": u,
		"NO_PROXY": noProxy, "no_proxy": noProxy,
	}, nil
}

// cleanup releases this config's hold on the proxy.
func (p *egressProxy) cleanup() error {
	p.removeView()
	_, err := egressServers.Delete(p.key)
	return err
}

// egressCallers finds containers for the proxy: the runtime's route when
// it is the container the credential names, else the engine's record (a
// container still starting, syncing its repos, has no route yet).
type egressCallers struct{ rt *hub.Runtime }

func (c egressCallers) Caller(ctx context.Context, user, server, nonce string) (egress.Caller, error) {
	var inst spawner.Instance
	if r, ok := c.rt.Peek(hub.Key(user, server)); ok && r.Instance().Nonce == nonce {
		inst = r.Instance()
	} else {
		var err error
		if inst, err = c.rt.Spawner().Get(ctx, user, server); err != nil {
			return egress.Caller{}, err
		}
	}
	if !inst.Running || inst.Addr == "" {
		return egress.Caller{}, errors.New("not running")
	}
	ap, err := netip.ParseAddrPort(inst.Addr)
	if err != nil {
		return egress.Caller{}, fmt.Errorf("container address %q: %w", inst.Addr, err)
	}
	return egress.Caller{Nonce: inst.Nonce, IP: ap.Addr().Unmap(), Groups: hub.GroupsFromMeta(inst.Meta)}, nil
}

// gitHosts are the host:port rules of the git host team repos are cloned
// from.
func gitHosts(gitURL string) []string {
	u, err := url.Parse(gitURL)
	if err != nil || u.Hostname() == "" {
		return nil
	}
	port := u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	r, err := policies.ParseEgressRule(net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return nil
	}
	return []string{r}
}

func lowerKeys(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}

// warnUnenforcedEgress says so when the policy has egress rules that this
// deployment does not enforce.
func (h *Handler) warnUnenforcedEgress(p *policies.Policy) {
	if h.Egress != nil || p == nil {
		return
	}
	for name, t := range p.Teams {
		if len(t.Egress) > 0 {
			h.logger.Warn("the policy lists egress rules, but this deployment has no egress block: containers' network access is not restricted",
				zap.String("team", name))
			return
		}
	}
}
