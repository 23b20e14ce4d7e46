package idp

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"golang.org/x/oauth2"
)

// plainSealer stands in for the session codec (which has its own tests).
type plainSealer struct{}

func (plainSealer) Seal(purpose string, v any) (string, error) {
	b, err := json.Marshal(v)
	return purpose + "|" + string(b), err
}

func (plainSealer) Open(purpose, sealed string, v any) error {
	p, body, ok := strings.Cut(sealed, "|")
	if !ok || p != purpose {
		return errors.New("wrong purpose")
	}
	return json.Unmarshal([]byte(body), v)
}

func testStore(t *testing.T) (*Store, string) {
	dir := t.TempDir()
	return &Store{Storage: &certmagic.FileStorage{Path: dir}, Prefix: "hubgate/test", Sealer: plainSealer{}}, dir
}

func TestBindRefusesAnotherAccount(t *testing.T) {
	s, dir := testStore(t)
	ctx := context.Background()
	if ok, _, err := s.Bind(ctx, "gina", "github", "5001"); !ok || err != nil {
		t.Fatalf("first bind: %v %v", ok, err)
	}
	if ok, _, err := s.Bind(ctx, "gina", "github", "5001"); !ok || err != nil {
		t.Fatalf("same account again: %v %v", ok, err)
	}
	ok, b, err := s.Bind(ctx, "gina", "github", "7001")
	if ok || err != nil || b.Subject != "5001" || b.Login != "gina" {
		t.Fatalf("recycled login: ok %v, binding %+v, %v", ok, b, err)
	}
	if ok, _, _ := s.Bind(ctx, "gina", "oidc:https://sso.example", "5001"); ok {
		t.Fatal("the same subject at another provider took the name")
	}
	// The admin releases the name by deleting the key the docs name.
	if err := os.Remove(filepath.Join(dir, "hubgate", "test", "identities", "gina")); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := s.Bind(ctx, "gina", "github", "7001"); !ok {
		t.Fatal("a released name is not bound anew")
	}
	if got := s.BindingKey("erin@example.org"); got != "hubgate/test/identities/erin_40example_2eorg" {
		t.Fatalf("binding key %q", got)
	}
}

func TestBindConcurrentFirstLogins(t *testing.T) {
	s, _ := testStore(t)
	var wg sync.WaitGroup
	wins := make(chan string, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub := string(rune('a' + i))
			if ok, _, err := s.Bind(context.Background(), "x", "github", sub); ok && err == nil {
				wins <- sub
			}
		}()
	}
	wg.Wait()
	close(wins)
	if n := len(wins); n != 1 {
		t.Fatalf("%d accounts bound the same name", n)
	}
}

func TestFreshToken(t *testing.T) {
	s, _ := testStore(t)
	ctx := context.Background()
	if _, err := s.LoadToken(ctx, 1); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing token: %v", err)
	}
	_ = s.SaveToken(ctx, 1, &oauth2.Token{AccessToken: "a1", RefreshToken: "r1", Expiry: time.Now().Add(time.Minute)})
	calls := 0
	refresh := func(_ context.Context, tok *oauth2.Token) (*oauth2.Token, error) {
		calls++
		if tok.RefreshToken != "r1" {
			return nil, errors.New("spent refresh token used")
		}
		return &oauth2.Token{AccessToken: "a2", RefreshToken: "r2", Expiry: time.Now().Add(8 * time.Hour)}, nil
	}
	soon := func(tok *oauth2.Token, _ time.Time) bool { return time.Until(tok.Expiry) < 5*time.Minute }
	tok, err := s.FreshToken(ctx, 1, soon, refresh)
	if err != nil || tok.AccessToken != "a2" {
		t.Fatalf("refresh: %v %v", tok, err)
	}
	// Stored: the next call needs no refresh and sees the new token.
	tok, err = s.FreshToken(ctx, 1, soon, refresh)
	if err != nil || tok.AccessToken != "a2" || calls != 1 {
		t.Fatalf("after refresh: %v %v, %d calls", tok, err, calls)
	}
}
