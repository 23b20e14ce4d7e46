package tokens

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

func newStore(t *testing.T) (*Store, certmagic.Storage) {
	t.Helper()
	st := &certmagic.FileStorage{Path: filepath.Join(t.TempDir(), "storage")}
	return New(st, "hubgate/t", time.Minute), st
}

func TestMintCheckRevoke(t *testing.T) {
	ctx := context.Background()
	s, st := newStore(t)
	tok, rec, err := s.Mint(ctx, Params{User: "alice", Groups: []string{"oidc:x"}, Note: "laptop", TTL: time.Hour, By: "home page"})
	if err != nil {
		t.Fatal(err)
	}
	if !IsToken(tok) || len(tok) != len(Prefix)+idLen+1+43 || !strings.Contains(tok, rec.ID) {
		t.Fatalf("token %q, record %+v", tok, rec)
	}
	// The token itself is nowhere in storage, only its hash.
	err = filepath.Walk(st.(*certmagic.FileStorage).Path, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			if strings.Contains(string(b), tok[len(Prefix)+idLen+1:]) {
				t.Errorf("%s holds the token's secret", p)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Check(ctx, tok)
	if err != nil || got.User != "alice" || got.Note != "laptop" || got.Groups[0] != "oidc:x" {
		t.Fatalf("check: %+v %v", got, err)
	}
	// One character of the secret changed: refused, though the id is right.
	bad := tok[:len(tok)-1] + map[bool]string{true: "A", false: "B"}[tok[len(tok)-1] != 'A']
	if _, err := s.Check(ctx, bad); !errors.Is(err, ErrUnknown) {
		t.Fatalf("altered token: %v", err)
	}
	for _, m := range []string{"", "hgp_", "token", Prefix + strings.Repeat("z", 56), strings.ToUpper(tok)} {
		if _, err := s.Check(ctx, m); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknown) {
			t.Errorf("Check(%q): %v", m, err)
		}
	}
	// Only the owner lists and revokes it.
	if l, _ := s.List(ctx, "bob"); len(l) != 0 {
		t.Fatalf("bob lists %+v", l)
	}
	if _, err := s.Revoke(ctx, "bob", rec.ID); !errors.Is(err, ErrUnknown) {
		t.Fatalf("bob revokes alice's token: %v", err)
	}
	if l, err := s.List(ctx, "alice"); err != nil || len(l) != 1 || l[0].ID != rec.ID {
		t.Fatalf("alice lists %+v %v", l, err)
	}
	if _, err := s.Revoke(ctx, "alice", rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Check(ctx, tok); !errors.Is(err, ErrUnknown) {
		t.Fatalf("revoked token: %v", err)
	}
	if l, _ := s.List(ctx, "alice"); len(l) != 0 {
		t.Fatalf("after revoke alice lists %+v", l)
	}
}

// TestRevocationReachesOtherInstancesWithinTTL: two stores sharing one
// storage stand for two replicas.
func TestRevocationReachesOtherInstancesWithinTTL(t *testing.T) {
	ctx := context.Background()
	st := &certmagic.FileStorage{Path: filepath.Join(t.TempDir(), "storage")}
	a, b := New(st, "hubgate/t", time.Minute), New(st, "hubgate/t", time.Minute)
	now := time.Now()
	b.now = func() time.Time { return now }
	tok, rec, err := a.Mint(ctx, Params{User: "alice", Note: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Check(ctx, tok); err != nil {
		t.Fatalf("other instance: %v", err)
	}
	if _, err := a.Revoke(ctx, "alice", rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Check(ctx, tok); !errors.Is(err, ErrUnknown) {
		t.Fatalf("revoking instance still accepts: %v", err)
	}
	// Within the TTL the other instance may still accept its cached record...
	if _, err := b.Check(ctx, tok); err != nil {
		t.Logf("other instance refused early (fine): %v", err)
	}
	// ...and never after it.
	now = now.Add(time.Minute + time.Second)
	if _, err := b.Check(ctx, tok); !errors.Is(err, ErrUnknown) {
		t.Fatalf("other instance after the TTL: %v", err)
	}
	if b.Valid(ctx, rec.ID) {
		t.Fatal("Valid after revocation")
	}
}

func TestExpiryAndLimits(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	now := time.Now()
	s.now = func() time.Time { return now }
	tok, _, err := s.Mint(ctx, Params{User: "alice", Note: "short", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Check(ctx, tok); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	if _, err := s.Check(ctx, tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired token: %v", err)
	}
	for _, note := range []string{"", "  ", "a\nb", strings.Repeat("x", MaxNote+1), "zero\u200bwidth"} {
		if _, _, err := s.Mint(ctx, Params{User: "alice", Note: note}); err == nil {
			t.Errorf("note %q accepted", note)
		}
	}
	for i := 1; i < MaxPerUser; i++ {
		if _, _, err := s.Mint(ctx, Params{User: "alice", Note: "n"}); err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
	}
	if _, _, err := s.Mint(ctx, Params{User: "alice", Note: "one too many"}); !errors.Is(err, ErrTooMany) {
		t.Fatalf("over the limit: %v", err)
	}
}

func TestUsedThrottlesAudit(t *testing.T) {
	s, _ := newStore(t)
	now := time.Now()
	s.now = func() time.Time { return now }
	if first, _ := s.Used("a", 10*time.Minute); !first {
		t.Fatal("first use not first")
	}
	now = now.Add(time.Minute)
	if first, last := s.Used("a", 10*time.Minute); first || last.IsZero() {
		t.Fatalf("second use: first=%v last=%v", first, last)
	}
	if !s.LastUsed("a").Equal(now) {
		t.Fatal("last use not recorded")
	}
	now = now.Add(10 * time.Minute)
	if first, _ := s.Used("a", 10*time.Minute); !first {
		t.Fatal("use after the interval not audited")
	}
}
