package redisstorage

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/caddypki"
	"github.com/redis/go-redis/v9"
)

// aclUser makes the test server require a user name and password.
var aclUser = []string{"--user", "default", "off", "--user", "hubgate", "on", ">s3cret-pw", "~*", "&*", "+@all"}

// TestCaddyUsesRedisStorage runs Caddy with this storage as its global
// storage: the PKI app makes its local CA, which lands in Redis, and the
// password comes from an {env.*} placeholder.
func TestCaddyUsesRedisStorage(t *testing.T) {
	srv := startRedis(t, aclUser...)
	t.Setenv("HUBGATE_TEST_REDIS_PASSWORD", "s3cret-pw")
	cfg := map[string]any{
		"admin":   map[string]any{"disabled": true},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}},
		"storage": map[string]any{
			"module": "redis", "address": srv.addr, "key_prefix": "it",
			"username": "hubgate", "password": "{env.HUBGATE_TEST_REDIS_PASSWORD}",
		},
		"apps": map[string]any{"pki": map[string]any{"certificate_authorities": map[string]any{
			"local": map[string]any{"install_trust": false},
		}}},
	}
	body, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(body, true); err != nil {
		t.Fatalf("caddy with redis storage: %v", err)
	}
	defer caddy.Stop()

	raw := redis.NewClient(&redis.Options{Addr: srv.addr, Username: "hubgate", Password: "s3cret-pw"})
	defer raw.Close()
	ctx := context.Background()
	keys, err := raw.ZRange(ctx, "it:index", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(keys, "\n")
	for _, want := range []string{"pki/authorities/local/root.crt", "pki/authorities/local/root.key", "pki/authorities/local/intermediate.crt"} {
		if !strings.Contains(joined, want) {
			t.Errorf("Caddy did not store %s in Redis; keys:\n%s", want, joined)
		}
	}
	pem, err := raw.HGet(ctx, "it:v:pki/authorities/local/root.crt", "v").Result()
	if err != nil || !strings.HasPrefix(pem, "-----BEGIN CERTIFICATE-----") {
		t.Errorf("root.crt in Redis: %.40q, %v", pem, err)
	}
}

// TestWrongPasswordIsClear: a bad password fails every call with Redis'
// own reason, and the password is not in the message.
func TestWrongPasswordIsClear(t *testing.T) {
	srv := startRedis(t, aclUser...)
	st := New(redis.NewClient(&redis.Options{Addr: srv.addr, Username: "hubgate", Password: "wrong-pw", MaxRetries: 1, DialerRetries: 1}),
		Options{Address: srv.addr})
	defer st.Close()
	_, err := st.Load(context.Background(), "k")
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") || strings.Contains(err.Error(), "wrong-pw") {
		t.Fatalf("Load with a wrong password: %v; want WRONGPASS without the password", err)
	}
}

// TestModuleSharedAcrossReloads provisions the module twice with the same
// settings, as a config reload does: both share one Storage, so a lock
// taken through the old config is released through the new one, and the
// client stays open until the last config lets go.
func TestModuleSharedAcrossReloads(t *testing.T) {
	srv := startRedis(t)
	provision := func() (*Redis, context.CancelFunc) {
		m := &Redis{Address: srv.addr, KeyPrefix: "reload", LockTTL: caddy.Duration(2 * time.Second)}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		if err := m.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		return m, cancel
	}
	old, cancelOld := provision()
	defer cancelOld()
	oldSt, _ := old.CertMagicStorage()
	ctx := context.Background()
	if err := oldSt.Lock(ctx, "job"); err != nil {
		t.Fatal(err)
	}
	cur, cancelCur := provision()
	defer cancelCur()
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := old.Cleanup(); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
	curSt, _ := cur.CertMagicStorage()
	if curSt != oldSt {
		t.Fatal("a reload with the same settings made a second Storage")
	}
	time.Sleep(3 * time.Second) // past lock_ttl: still renewed after the old config went
	if err := curSt.Unlock(ctx, "job"); err != nil {
		t.Fatalf("unlock through the new config: %v", err)
	}
	if err := cur.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := curSt.Store(ctx, "k", []byte("v")); err == nil {
		t.Fatal("the Storage still works after the last config let go; want it closed")
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		r    Redis
		want string
	}{
		{"negative db", Redis{DB: -1}, "db must be 0 or more"},
		{"short lock ttl", Redis{LockTTL: caddy.Duration(time.Millisecond)}, "lock_ttl must be at least 1s"},
		{"prefix with space", Redis{KeyPrefix: "a b"}, "white space"},
		{"cert without key", Redis{TLS: &TLSConfig{CertFile: "c.pem"}}, "cert_file and key_file go together"},
		{"fine", Redis{DB: 3, LockTTL: caddy.Duration(time.Minute), KeyPrefix: "x"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.r.Validate()
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate: %v; want %q", err, c.want)
			}
		})
	}
}
