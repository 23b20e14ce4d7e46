// Package redisstorage is a Caddy storage module (caddy.storage.redis) that
// keeps Caddy's and hubgate's storage (certificates, the master and
// assertion keys, identities, revocations, ...) in a Redis server, so that
// gateway replicas without a shared filesystem share one storage and
// coordinate through its locks.
//
// Locks are owned: Lock sets the lock key with SET NX PX to a random token
// of this instance, a background goroutine renews the expiry while the lock
// is held, and Unlock deletes the key only if it still holds this
// instance's token (a compare-and-delete Lua script). A holder that dies
// stops renewing, so its lock expires after LockTTL and another replica
// takes it.
//
// It works with one Redis server (or a primary behind a fixed address);
// Redis Cluster is not supported, because deletes of a key prefix run as one
// script over several keys.
package redisstorage

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Redis{})
	// go-redis logs connection trouble through a global logger (to stderr
	// by default); send it to Caddy's log instead.
	redis.SetLogger(clientLogger{})
}

// clientLogger passes go-redis' own log lines to Caddy's logger. They name
// addresses and errors, never credentials.
type clientLogger struct{}

func (clientLogger) Printf(_ context.Context, format string, v ...any) {
	caddy.Log().Named("storage.redis.client").Warn(fmt.Sprintf(format, v...))
}

// Defaults of the optional settings.
const (
	DefaultAddress   = "localhost:6379"
	DefaultKeyPrefix = "caddy"
	DefaultLockTTL   = 10 * time.Second
	DefaultTimeout   = 5 * time.Second
)

// Redis is the caddy.storage.redis module: Caddy storage in a Redis server.
type Redis struct {
	// Address is the Redis server as host:port. Default: "localhost:6379".
	Address string `json:"address,omitempty"`

	// DB is the Redis database number (SELECT). Default: 0.
	DB int `json:"db,omitempty"`

	// KeyPrefix is put in front of every Redis key this module uses, so
	// that several deployments can share one Redis server; every replica
	// of one deployment must use the same prefix. Default: "caddy".
	KeyPrefix string `json:"key_prefix,omitempty"`

	// Username is the Redis ACL user name. Optional; leave empty for the
	// "default" user or a server with only requirepass.
	Username string `json:"username,omitempty"`

	// Password is the Redis password (requirepass or the ACL user's
	// password). Placeholders are replaced, so write "{env.REDIS_PASSWORD}"
	// rather than the password itself. It is never logged.
	Password string `json:"password,omitempty"`

	// TLS, when present, connects to Redis over TLS (Redis' tls-port).
	// Without it the connection is plain TCP.
	TLS *TLSConfig `json:"tls,omitempty"`

	// Timeout bounds dialling and every single command (a Lock waiting for
	// a busy lock is bounded by its context, not by this). Default: 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// LockTTL is how long a lock stays valid without renewal. A holder
	// renews it every third of this while it holds the lock, so this is
	// how long a lock outlives a holder that died. Default: 10s; at least
	// 1s.
	LockTTL caddy.Duration `json:"lock_ttl,omitempty"`

	storage *Storage
	poolKey string
	logger  *zap.Logger
}

// pool shares one Storage (client, lock renewals) among the configs that
// use the same settings, so that it outlives config reloads.
var pool = caddy.NewUsagePool()

// TLSConfig is how the module connects to Redis over TLS.
type TLSConfig struct {
	// ServerName is the name the server's certificate must carry.
	// Default: the host part of Address.
	ServerName string `json:"server_name,omitempty"`

	// CAFile is a PEM file of the CA certificates that sign the server's
	// certificate. Default: the system's roots.
	CAFile string `json:"ca_file,omitempty"`

	// CertFile and KeyFile are the PEM client certificate and key to
	// present, for a server that requires client certificates
	// (tls-auth-clients yes). Both or neither.
	CertFile string `json:"cert_file,omitempty"`

	// KeyFile is the PEM private key of CertFile.
	KeyFile string `json:"key_file,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Redis) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.storage.redis",
		New: func() caddy.Module { return new(Redis) },
	}
}

// Provision fills in defaults, replaces placeholders and makes the client.
// It does not contact the server: a Redis that is down at start-up shows
// as errors from the storage calls, which recover once it is back.
func (r *Redis) Provision(ctx caddy.Context) error {
	r.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	r.Address = repl.ReplaceAll(r.Address, "")
	r.Username = repl.ReplaceAll(r.Username, "")
	password := repl.ReplaceAll(r.Password, "")
	if r.Address == "" {
		r.Address = DefaultAddress
	}
	if r.KeyPrefix == "" {
		r.KeyPrefix = DefaultKeyPrefix
	}
	if r.Timeout == 0 {
		r.Timeout = caddy.Duration(DefaultTimeout)
	}
	if r.LockTTL == 0 {
		r.LockTTL = caddy.Duration(DefaultLockTTL)
	}
	if err := r.Validate(); err != nil {
		return err
	}
	opts := &redis.Options{
		Addr:         r.Address,
		Username:     r.Username,
		Password:     password,
		DB:           r.DB,
		DialTimeout:  time.Duration(r.Timeout),
		ReadTimeout:  time.Duration(r.Timeout),
		WriteTimeout: time.Duration(r.Timeout),
		// Storage errors must surface quickly when Redis is down; the
		// callers (certmagic, hubgate) retry at their own pace.
		MaxRetries:    1,
		DialerRetries: 1,
	}
	if r.TLS != nil {
		tc, err := r.TLS.config(r.Address)
		if err != nil {
			return fmt.Errorf("redis storage tls: %w", err)
		}
		opts.TLSConfig = tc
	}
	// One Storage per distinct configuration, shared across config
	// reloads: a lock taken before a reload is still held (and renewed)
	// after it, and can be unlocked through the new config's module.
	r.poolKey = r.key(password)
	val, _, err := pool.LoadOrNew(r.poolKey, func() (caddy.Destructor, error) {
		return New(redis.NewClient(opts), Options{
			Address:   r.Address,
			KeyPrefix: r.KeyPrefix,
			LockTTL:   time.Duration(r.LockTTL),
			Timeout:   time.Duration(r.Timeout),
			Logger:    r.logger,
		}), nil
	})
	if err != nil {
		return fmt.Errorf("redis storage: %w", err)
	}
	r.storage = val.(*Storage)
	r.logger.Debug("redis storage provisioned",
		zap.String("address", r.Address), zap.Int("db", r.DB),
		zap.String("key_prefix", r.KeyPrefix), zap.Bool("tls", r.TLS != nil))
	return nil
}

// Validate checks the settings; it is pure.
func (r *Redis) Validate() error {
	if r.DB < 0 {
		return fmt.Errorf("redis storage: db must be 0 or more, not %d", r.DB)
	}
	if r.LockTTL != 0 && time.Duration(r.LockTTL) < time.Second {
		return fmt.Errorf("redis storage: lock_ttl must be at least 1s, not %s", time.Duration(r.LockTTL))
	}
	if r.Timeout < 0 {
		return errors.New("redis storage: timeout must not be negative")
	}
	if strings.ContainsAny(r.KeyPrefix, " \t\r\n") {
		return fmt.Errorf("redis storage: key_prefix %q must not contain white space", r.KeyPrefix)
	}
	if r.TLS != nil && (r.TLS.CertFile == "") != (r.TLS.KeyFile == "") {
		return errors.New("redis storage tls: cert_file and key_file go together")
	}
	return nil
}

// CertMagicStorage returns the storage; it implements caddy.StorageConverter.
func (r *Redis) CertMagicStorage() (certmagic.Storage, error) {
	if r.storage == nil {
		return nil, errors.New("redis storage: not provisioned")
	}
	return r.storage, nil
}

// Cleanup releases this config's use of the shared Storage; the last
// config to let go stops its lock renewals and closes its client (locks
// still held are not deleted: they expire after LockTTL, as for a holder
// that died). Calling it twice is harmless.
func (r *Redis) Cleanup() error {
	if r.poolKey == "" {
		return nil
	}
	key := r.poolKey
	r.poolKey = ""
	_, err := pool.Delete(key)
	return err
}

// key identifies the settings that make a distinct Storage; the password
// enters only as a hash.
func (r *Redis) key(password string) string {
	sum := sha256.Sum256([]byte(password))
	t := TLSConfig{}
	if r.TLS != nil {
		t = *r.TLS
	}
	return fmt.Sprintf("%s|%d|%s|%x|%s|%t|%+v|%d|%d", r.Address, r.DB, r.Username, sum[:8],
		r.KeyPrefix, r.TLS != nil, t, r.Timeout, r.LockTTL)
}

// config builds the tls.Config; address supplies the default server name.
func (t *TLSConfig) config(address string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if tc.ServerName == "" {
		host := address
		if i := strings.LastIndex(address, ":"); i >= 0 {
			host = address[:i]
		}
		tc.ServerName = strings.Trim(host, "[]")
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Interface guards.
var (
	_ caddy.Provisioner      = (*Redis)(nil)
	_ caddy.Validator        = (*Redis)(nil)
	_ caddy.CleanerUpper     = (*Redis)(nil)
	_ caddy.StorageConverter = (*Redis)(nil)
)
