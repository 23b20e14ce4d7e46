package session

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

func testCodec(t *testing.T) *Codec {
	t.Helper()
	c, err := NewCodec(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSealOpenRoundTrip(t *testing.T) {
	c := testCodec(t)
	in := Session{ID: NewID(), User: "alice", Groups: []string{"oidc:x"}, Provider: "local", IssuedAt: 1, Expires: 2}
	sealed, err := c.Seal(PurposeSession, in)
	if err != nil {
		t.Fatal(err)
	}
	var out Session
	if err := c.Open(PurposeSession, sealed, &out); err != nil {
		t.Fatal(err)
	}
	if out.User != "alice" || out.ID != in.ID || len(out.Groups) != 1 {
		t.Fatalf("round trip lost data: %+v", out)
	}
}

func TestOpenRefusesTamperingAndOtherPurposes(t *testing.T) {
	c := testCodec(t)
	sealed, err := c.Seal(PurposeSession, Session{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewCodec(bytes.Repeat([]byte{8}, 32))
	otherSealed, _ := other.Seal(PurposeSession, Session{User: "alice"})
	flip := []byte(sealed)
	flip[len(flip)/2] ^= 1
	if flip[len(flip)/2] == '_'+1 || flip[len(flip)/2] == '-'+1 {
		flip[len(flip)/2] = 'A'
	}
	cases := map[string]string{
		"empty":          "",
		"garbage":        "not-a-cookie",
		"flipped bit":    string(flip),
		"truncated":      sealed[:len(sealed)-4],
		"other key":      otherSealed,
		"oversized":      strings.Repeat("A", MaxSealedLen+1),
		"plain json b64": "eyJ1IjoiYWxpY2UifQ",
	}
	for name, v := range cases {
		var out Session
		if err := c.Open(PurposeSession, v, &out); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Open = %v, want ErrInvalid", name, err)
		}
	}
	var out Session
	if err := c.Open(PurposeLogin, sealed, &out); !errors.Is(err, ErrInvalid) {
		t.Errorf("session cookie opened as login state: %v", err)
	}
}

func TestSessionValid(t *testing.T) {
	now := time.Unix(1000, 0)
	ok := Session{ID: "x", User: "a", IssuedAt: 900, Expires: 2000}
	if !ok.Valid(now) {
		t.Fatal("valid session refused")
	}
	expired := ok
	expired.Expires = 999
	if expired.Valid(now) {
		t.Fatal("expired session accepted")
	}
	noUser := ok
	noUser.User = ""
	if noUser.Valid(now) {
		t.Fatal("session without user accepted")
	}
}

func TestLoadOrCreateKeyIsStable(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	ctx := context.Background()
	k1, err := LoadOrCreateKey(ctx, storage, "hubgate/test/master.key")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateKey(ctx, storage, "hubgate/test/master.key")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1, k2) || len(k1) != 32 {
		t.Fatalf("key not stable: %x vs %x", k1, k2)
	}
	if err := storage.Store(ctx, "hubgate/test/bad.key", []byte("short")); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(ctx, storage, "hubgate/test/bad.key"); err == nil {
		t.Fatal("corrupt key accepted")
	}
}
