package caddymodule

import (
	"fmt"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("hubgate", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("hubgate", httpcaddyfile.Before, "reverse_proxy")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var m Handler
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return &m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	hubgate {
//		policy <file-or-folder>...
//		name <deployment-name>
//		public_url <origin>
//		strip_headers <header-name>...
//		auto_login on|off
//		audit_log <file>
//		audit_log_max_size <size>
//		docker {
//			host <docker-host>
//			network <network-name>
//			isolate true|false
//		}
//		kubernetes { namespace, kubeconfig, storage_class, volume_size, ... }
//		egress { port, listen, proxy_host, resolve, no_proxy }
//		session_ttl <duration>
//		start_timeout <duration>
//		start_wait <duration>
//		route_cache_size <n>
//		max_idle_conns_per_host <n>
//		login_failures_per_user <n>
//		login_failures_per_ip <n>
//		login_window <duration>
//		max_concurrent_starts <n>
//		cull_interval <duration>
//		activity_flush <duration>
//		cull_lease <duration>
//		oidc <name> { issuer, client_id, client_secret, scopes, ... }
//		github { client_id, client_secret, url, api_url, orgs, ... }
//		local off
//		assertion { header <name>; ttl <duration> }
//		server_host <template>          # such as {server}--{user}.hub.example.org
//		server_cookie_ttl <duration>
//		shares on|off
//		backup { repository, password_file, every, keep_daily, ... }
//	}
//
// The policy may also be given inline: `hubgate <file-or-folder>`. The
// login subdirectives are described in full at unmarshalAuth (oauth.go).
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	h.Policy = append(h.Policy, d.RemainingArgs()...)
	for d.NextBlock(0) {
		switch d.Val() {
		case "policy":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.Policy = append(h.Policy, args...)
		case "name":
			if !d.AllArgs(&h.Name) {
				return d.ArgErr()
			}
		case "auto_login":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			on, err := parseOnOff(v)
			if err != nil {
				return d.Errf("auto_login: %v", err)
			}
			h.AutoLogin = &on
		case "strip_headers":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.StripHeaders = append(h.StripHeaders, args...)
		case "audit_log":
			// No argument (an empty placeholder) leaves it off.
			switch args := d.RemainingArgs(); len(args) {
			case 0:
			case 1:
				h.AuditLog = args[0]
			default:
				return d.ArgErr()
			}
		case "server_host", "shares", "server_cookie_ttl":
			if err := h.unmarshalServerHost(d); err != nil {
				return err
			}
		case "audit_log_max_size":
			// No argument (an empty placeholder) keeps the default.
			switch args := d.RemainingArgs(); len(args) {
			case 0:
			case 1:
				n, err := humanize.ParseBytes(args[0])
				if err != nil || n == 0 || n > 1<<50 {
					return d.Errf("audit_log_max_size %q: give a size such as 100MiB", args[0])
				}
				h.AuditLogMaxSize = int64(n)
			default:
				return d.ArgErr()
			}
		case "public_url":
			if !d.AllArgs(&h.PublicURL) {
				return d.ArgErr()
			}
		case "docker":
			if d.NextArg() {
				return d.ArgErr()
			}
			if h.Docker == nil {
				h.Docker = new(DockerConfig)
			}
			for d.NextBlock(1) {
				switch d.Val() {
				case "host":
					if !d.AllArgs(&h.Docker.Host) {
						return d.ArgErr()
					}
				case "network":
					if !d.AllArgs(&h.Docker.Network) {
						return d.ArgErr()
					}
				case "isolate":
					var v string
					if !d.AllArgs(&v) {
						return d.ArgErr()
					}
					b, err := strconv.ParseBool(v)
					if err != nil {
						return d.Errf("isolate: %v", err)
					}
					h.Docker.Isolate = &b
				default:
					return d.Errf("unrecognized docker option %q", d.Val())
				}
			}
		case "session_ttl", "start_timeout", "start_wait", "login_window", "cull_interval", "activity_flush", "cull_lease":
			name := d.Val()
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("%s: %v", name, err)
			}
			switch name {
			case "session_ttl":
				h.SessionTTL = caddy.Duration(dur)
			case "start_timeout":
				h.StartTimeout = caddy.Duration(dur)
			case "start_wait":
				h.StartWait = caddy.Duration(dur)
			case "login_window":
				h.LoginWindow = caddy.Duration(dur)
			case "cull_interval":
				h.CullInterval = caddy.Duration(dur)
			case "activity_flush":
				h.ActivityFlush = caddy.Duration(dur)
			case "cull_lease":
				h.CullLease = caddy.Duration(dur)
			}
		case "route_cache_size", "max_idle_conns_per_host", "login_failures_per_user", "login_failures_per_ip", "max_concurrent_starts":
			name := d.Val()
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return d.Errf("%s: %v", name, err)
			}
			switch name {
			case "route_cache_size":
				h.RouteCacheSize = n
			case "max_idle_conns_per_host":
				h.MaxIdleConnsPerHost = n
			case "login_failures_per_user":
				h.LoginFailuresPerUser = n
			case "login_failures_per_ip":
				h.LoginFailuresPerIP = n
			case "max_concurrent_starts":
				h.MaxConcurrentStarts = &n
			}
		case "kubernetes":
			if err := h.unmarshalKubernetes(d); err != nil {
				return err
			}
		case "egress":
			if err := h.unmarshalEgress(d); err != nil {
				return err
			}
		case "backup":
			if err := h.unmarshalBackup(d); err != nil {
				return err
			}
		case "oidc", "github", "local", "assertion":
			if err := h.unmarshalAuth(d); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized hubgate option %q", d.Val())
		}
	}
	return nil
}

// Interface guard.
var _ caddyfile.Unmarshaler = (*Handler)(nil)

// parseOnOff reads on/off (or true/false).
func parseOnOff(v string) (bool, error) {
	switch v {
	case "on", "true":
		return true, nil
	case "off", "false":
		return false, nil
	}
	return false, fmt.Errorf("want on or off, got %q", v)
}
