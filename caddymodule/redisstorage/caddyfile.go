package redisstorage

import (
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile sets up the storage from Caddyfile tokens, as the
// global storage option:
//
//	storage redis [<address>] {
//		address     <host:port>
//		db          <number>
//		key_prefix  <prefix>
//		username    <user>
//		password    <password, e.g. {env.REDIS_PASSWORD}>
//		timeout     <duration>
//		lock_ttl    <duration>
//		tls [{
//			server_name <name>
//			ca_file     <pem file>
//			cert_file   <pem file>
//			key_file    <pem file>
//		}]
//	}
func (r *Redis) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		r.Address = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "address", "key_prefix", "username", "password":
			val, err := oneArg(d)
			if err != nil {
				return err
			}
			switch opt {
			case "address":
				r.Address = val
			case "key_prefix":
				r.KeyPrefix = val
			case "username":
				r.Username = val
			case "password":
				r.Password = val
			}
		case "db":
			val, err := oneArg(d)
			if err != nil {
				return err
			}
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return d.Errf("db: %q is not a database number (0, 1, ...)", val)
			}
			r.DB = n
		case "timeout", "lock_ttl":
			val, err := oneArg(d)
			if err != nil {
				return err
			}
			dur, err := caddy.ParseDuration(val)
			if err != nil {
				return d.Errf("%s: %v", opt, err)
			}
			if opt == "timeout" {
				r.Timeout = caddy.Duration(dur)
			} else {
				if dur < time.Second {
					return d.Errf("lock_ttl: must be at least 1s, not %s", val)
				}
				r.LockTTL = caddy.Duration(dur)
			}
		case "tls":
			if d.NextArg() {
				return d.ArgErr()
			}
			r.TLS = &TLSConfig{}
			for d.NextBlock(1) {
				sub := d.Val()
				val, err := oneArg(d)
				if err != nil {
					return err
				}
				switch sub {
				case "server_name":
					r.TLS.ServerName = val
				case "ca_file":
					r.TLS.CAFile = val
				case "cert_file":
					r.TLS.CertFile = val
				case "key_file":
					r.TLS.KeyFile = val
				default:
					return d.Errf("tls: unknown option %q (want server_name, ca_file, cert_file or key_file)", sub)
				}
			}
		default:
			return d.Errf("unknown redis storage option %q", opt)
		}
	}
	return nil
}

// oneArg returns the single argument of the current option.
func oneArg(d *caddyfile.Dispenser) (string, error) {
	opt := d.Val()
	if !d.NextArg() {
		return "", d.Errf("%s: missing value", opt)
	}
	val := d.Val()
	if d.NextArg() {
		return "", d.Errf("%s: one value expected, got also %q", opt, d.Val())
	}
	return val, nil
}

// Interface guard.
var _ caddyfile.Unmarshaler = (*Redis)(nil)
