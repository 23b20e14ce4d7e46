package shares

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// TestTwoReplicasAgree: grants live in storage; a second store on the
// same storage sees a grant after Refresh and reports its revocation.
func TestTwoReplicasAgree(t *testing.T) {
	ctx := context.Background()
	st := &certmagic.FileStorage{Path: t.TempDir()}
	a, b := New(st, "hubgate/x"), New(st, "hubgate/x")
	if a.Ready() {
		t.Fatal("ready before any read")
	}
	for _, s := range []*Store{a, b} {
		if _, err := s.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	g, err := a.Add(ctx, Grant{Kind: KindShare, Owner: "alice", Server: "notebook", Users: []string{"bob"}, By: "alice"}, now)
	if err != nil || g.ID == "" {
		t.Fatalf("add: %+v %v", g, err)
	}
	if len(b.All()) != 0 {
		t.Fatal("b saw the grant before reading")
	}
	if _, err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := Allows(b.All(), "alice", "notebook", "bob", false, nil, now); got == nil || got.ID != g.ID {
		t.Fatalf("b: %+v", b.All())
	}
	if _, err := b.Revoke(ctx, g.ID, func(x Grant) bool { return x.Owner == "mallory" }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke by someone else: %v", err)
	}
	if _, err := b.Revoke(ctx, g.ID, func(x Grant) bool { return x.Owner == "alice" }); err != nil {
		t.Fatal(err)
	}
	gone, err := a.Refresh(ctx)
	if err != nil || len(gone) != 1 || gone[0].ID != g.ID {
		t.Fatalf("a's refresh after the revocation: %+v %v", gone, err)
	}
	if Allows(a.All(), "alice", "notebook", "bob", false, nil, now) != nil {
		t.Fatal("revoked grant still allows")
	}
}

// TestAddDropsExpired: expired grants leave the document on the next add.
func TestAddDropsExpired(t *testing.T) {
	ctx := context.Background()
	s := New(&certmagic.FileStorage{Path: t.TempDir()}, "p")
	now := time.Now()
	if _, err := s.Add(ctx, Grant{Kind: KindShare, Owner: "a", Server: "n", Users: []string{"b"}, Expires: now.Add(time.Second)}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(ctx, Grant{Kind: KindShare, Owner: "a", Server: "n", Users: []string{"c"}}, now.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := len(s.All()); n != 1 {
		t.Fatalf("%d grants, want 1", n)
	}
}
