package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/hub"
	"github.com/hubgate/hubgate/caddymodule/serverhost"
	"github.com/hubgate/hubgate/caddymodule/shares"
	"github.com/hubgate/hubgate/caddymodule/web"
	"github.com/hubgate/hubgate/policies"
)

// This file wires server_host, shares and admin access grants: their
// validation, the grants' store and its refresh loop, and the on-demand
// TLS permission module that answers for a deployment's hosts.

func init() {
	caddy.RegisterModule(TLSPermission{})
}

// validateServerHost checks server_host, shares and their needs.
func (h *Handler) validateServerHost() error {
	if h.Shares && h.ServerHost == "" {
		return errors.New("hubgate: shares need server_host (such as {server}--{user}.hub.example.org): on the hub's shared origin, a shared server's pages could act as every visitor towards the hub and the visitor's own servers, so sharing is refused without an origin per server")
	}
	if h.ServerHost == "" {
		return nil
	}
	t, err := serverhost.Parse(h.ServerHost)
	if err != nil {
		return fmt.Errorf("hubgate: %w", err)
	}
	if h.PublicURL == "" {
		return errors.New("hubgate: server_host needs public_url (the hub's origin, such as https://hub.example.org): server hosts send browsers to the hub for their cookie")
	}
	u, _ := url.Parse(h.PublicURL)
	if _, _, ok := t.Match(u.Host); ok {
		return fmt.Errorf("hubgate: public_url %s is itself a server host of server_host %s", h.PublicURL, h.ServerHost)
	}
	if h.ServerCookieTTL < 0 {
		return errors.New("hubgate: server_cookie_ttl must not be negative")
	}
	return nil
}

// serverHosts is one config's server-host parts.
type serverHosts struct {
	tmpl    *serverhost.Template
	store   *shares.Store
	hubHost string
	policy  func() *policies.Policy
	cancel  context.CancelFunc
	done    chan struct{}
}

// provisionServerHosts builds the template and the grants' store (read
// once, bounded) and starts the store's refresh loop, which closes the
// websockets of grants revoked on other replicas. With no server_host it
// does nothing.
func (h *Handler) provisionServerHosts(ctx caddy.Context, prefix string, streams *hub.Streams, policy func() *policies.Policy, audit *zap.Logger) (*serverHosts, error) {
	if h.ServerHost == "" {
		return nil, nil
	}
	t, err := serverhost.Parse(h.ServerHost)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(h.PublicURL)
	sh := &serverHosts{tmpl: t, store: shares.New(ctx.Storage(), prefix), hubHost: strings.ToLower(u.Hostname()), policy: policy, done: make(chan struct{})}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if _, err := sh.store.Refresh(rctx); err != nil {
		// Not fatal: until the store is read, only owners get in.
		h.logger.Warn("reading shares failed; only owners get in until it succeeds", zap.Error(err))
	}
	cancel()
	lctx, cancel := context.WithCancel(context.Background())
	sh.cancel = cancel
	go func() {
		defer close(sh.done)
		tk := time.NewTicker(shares.RefreshInterval)
		defer tk.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-tk.C:
			}
			c, cancel := context.WithTimeout(lctx, 10*time.Second)
			gone, err := sh.store.Refresh(c)
			cancel()
			if err != nil {
				h.logger.Warn("reading shares failed", zap.Error(err))
				continue
			}
			for _, g := range gone {
				if n := streams.CloseGrant(g.ID); n > 0 {
					audit.Info("revoked grant's streams closed", zap.String("owner", g.Owner), zap.String("server", g.Server), zap.String("grant", g.ID), zap.Int("streams_closed", n))
				}
			}
		}
	}()
	permissions.Store(h.Name, sh)
	return sh, nil
}

// siteOptions adds the server-host parts to the site's options.
func (sh *serverHosts) siteOptions(o *web.Options, h *Handler, streams *hub.Streams) {
	if sh == nil {
		return
	}
	o.ServerHost = sh.tmpl
	o.ServerCookieTTL = time.Duration(h.ServerCookieTTL)
	o.Shares = sh.store
	o.SharesEnabled = h.Shares
	o.GrantChanged = streams.CloseGrant
}

// close stops the refresh loop and withdraws the TLS permission answer
// (unless a newer config already took it over).
func (sh *serverHosts) close(name string) {
	if sh == nil {
		return
	}
	sh.cancel()
	<-sh.done
	permissions.CompareAndDelete(name, sh)
}

// allowed reports whether a certificate may be had for host: the hub's
// own, or the host of a server the policy knows (an image it names, of a
// user it names).
func (sh *serverHosts) allowed(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == sh.hubHost {
		return true
	}
	user, server, ok := sh.tmpl.Match(host)
	if !ok {
		return false
	}
	pol := sh.policy()
	return pol != nil && pol.Images[server] != nil && pol.Known(user, nil)
}

// permissions maps a deployment name to its config's server hosts, for
// TLSPermission. A reload stores the new config's before the old one's
// Cleanup, which then leaves it alone.
var permissions sync.Map // string -> *serverHosts

// TLSPermission answers Caddy's on-demand TLS question "may a certificate
// be had for this name?" for a hubgate deployment with server_host: yes
// for the hub's host (public_url) and for hosts of servers the policy
// knows (its images, of users it names; users who are in only through an
// identity provider's groups are not known by name here: use a wildcard
// certificate for them), no for everything else. In a Caddyfile:
//
//	{
//		on_demand_tls {
//			permission hubgate <deployment-name>
//		}
//	}
type TLSPermission struct {
	// Name is the deployment (the hubgate handler's name). Default:
	// "hubgate".
	Name string `json:"name,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (TLSPermission) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tls.permission.hubgate",
		New: func() caddy.Module { return new(TLSPermission) },
	}
}

// UnmarshalCaddyfile reads `permission hubgate [<name>]`.
func (p *TLSPermission) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		p.Name = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// CertificateAllowed implements caddytls.OnDemandPermission.
func (p TLSPermission) CertificateAllowed(_ context.Context, name string) error {
	dep := p.Name
	if dep == "" {
		dep = defaultName
	}
	v, ok := permissions.Load(dep)
	if !ok {
		return fmt.Errorf("hubgate deployment %q has no server_host configured: %w", dep, caddytls.ErrPermissionDenied)
	}
	if !v.(*serverHosts).allowed(name) {
		return fmt.Errorf("%s is not a host of hubgate deployment %q: %w", name, dep, caddytls.ErrPermissionDenied)
	}
	return nil
}

// Interface guards.
var (
	_ caddytls.OnDemandPermission = TLSPermission{}
	_ caddyfile.Unmarshaler       = (*TLSPermission)(nil)
)

// unmarshalServerHost reads server_host, server_cookie_ttl and shares.
func (h *Handler) unmarshalServerHost(d *caddyfile.Dispenser) error {
	name := d.Val()
	var v string
	if !d.AllArgs(&v) {
		return d.ArgErr()
	}
	switch name {
	case "server_host":
		h.ServerHost = v
	case "server_cookie_ttl":
		dur, err := caddy.ParseDuration(v)
		if err != nil {
			return d.Errf("server_cookie_ttl: %v", err)
		}
		h.ServerCookieTTL = caddy.Duration(dur)
	case "shares":
		on, err := parseOnOff(v)
		if err != nil {
			return d.Errf("shares: %v", err)
		}
		h.Shares = on
	}
	return nil
}
