package idp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"time"

	"github.com/caddyserver/certmagic"
	"golang.org/x/oauth2"
)

// Sealer encrypts and authenticates values; *session.Codec is one.
type Sealer interface {
	Seal(purpose string, v any) (string, error)
	Open(purpose, sealed string, v any) error
}

// PurposeToken is the sealing purpose of stored GitHub tokens (distinct
// from every purpose of the session package).
const PurposeToken = "hubgate github token v1"

// Store keeps what must outlive a login in Caddy's storage, shared by
// every gateway instance: which external account each user name belongs
// to, and the GitHub users' tokens (sealed).
//
// Keys, under Prefix (such as "hubgate/<name>"):
//
//	identities/<escaped user>   JSON binding: provider and subject
//	github/tokens/<github id>   the sealed token
type Store struct {
	Storage certmagic.Storage
	Prefix  string
	Sealer  Sealer
}

// Binding records which external account a user name belongs to.
type Binding struct {
	// Provider is "github" or "oidc:<issuer>".
	Provider string `json:"provider"`
	// Subject is the GitHub numeric id or the OIDC "sub".
	Subject string `json:"subject"`
	// Login is the login or user name at the time of binding.
	Login string `json:"login"`
	// Since is when the binding was made (RFC 3339).
	Since string `json:"since"`
}

// BindingKey returns the storage key of a user name's binding.
func (s *Store) BindingKey(user string) string {
	return s.Prefix + "/identities/" + EscapeKey(user)
}

// Bind checks that user belongs to (provider, subject): the first login
// with a user name binds it; a later login with another account is
// refused (ok false, with the existing binding). An admin re-assigns a
// name by deleting the storage key.
func (s *Store) Bind(ctx context.Context, user, provider, subject string) (ok bool, existing Binding, err error) {
	key := s.BindingKey(user)
	if b, err := s.loadBinding(ctx, key); err == nil {
		return b.Provider == provider && b.Subject == subject, b, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, Binding{}, err
	}
	if err := s.Storage.Lock(ctx, key); err != nil {
		return false, Binding{}, fmt.Errorf("lock %s: %w", key, err)
	}
	defer func() { _ = s.Storage.Unlock(context.WithoutCancel(ctx), key) }()
	if b, err := s.loadBinding(ctx, key); err == nil {
		return b.Provider == provider && b.Subject == subject, b, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, Binding{}, err
	}
	b := Binding{Provider: provider, Subject: subject, Login: user, Since: time.Now().UTC().Format(time.RFC3339)}
	raw, _ := json.Marshal(b)
	if err := s.Storage.Store(ctx, key, raw); err != nil {
		return false, Binding{}, fmt.Errorf("store %s: %w", key, err)
	}
	return true, b, nil
}

func (s *Store) loadBinding(ctx context.Context, key string) (Binding, error) {
	raw, err := s.Storage.Load(ctx, key)
	if err != nil {
		return Binding{}, err
	}
	var b Binding
	if err := json.Unmarshal(raw, &b); err != nil || b.Provider == "" {
		return Binding{}, fmt.Errorf("binding %s in storage is corrupt", key)
	}
	return b, nil
}

// storedToken is a GitHub token at rest (sealed).
type storedToken struct {
	Access   string `json:"a"`
	Refresh  string `json:"r,omitempty"`
	Expiry   int64  `json:"x,omitempty"`
	Obtained int64  `json:"o,omitempty"`
}

func (s *Store) tokenKey(id int64) string {
	return s.Prefix + "/github/tokens/" + strconv.FormatInt(id, 10)
}

// SaveToken stores the GitHub token of account id, sealed.
func (s *Store) SaveToken(ctx context.Context, id int64, tok *oauth2.Token) error {
	st := storedToken{Access: tok.AccessToken, Refresh: tok.RefreshToken, Obtained: time.Now().Unix()}
	if !tok.Expiry.IsZero() {
		st.Expiry = tok.Expiry.Unix()
	}
	sealed, err := s.Sealer.Seal(PurposeToken, st)
	if err != nil {
		return err
	}
	return s.Storage.Store(ctx, s.tokenKey(id), []byte(sealed))
}

// LoadToken returns the stored token of account id.
func (s *Store) LoadToken(ctx context.Context, id int64) (*oauth2.Token, error) {
	tok, _, err := s.loadToken(ctx, id)
	return tok, err
}

func (s *Store) loadToken(ctx context.Context, id int64) (*oauth2.Token, time.Time, error) {
	raw, err := s.Storage.Load(ctx, s.tokenKey(id))
	if err != nil {
		return nil, time.Time{}, err
	}
	var st storedToken
	if err := s.Sealer.Open(PurposeToken, string(raw), &st); err != nil {
		return nil, time.Time{}, fmt.Errorf("stored token of %d: %w", id, err)
	}
	tok := &oauth2.Token{AccessToken: st.Access, RefreshToken: st.Refresh, TokenType: "bearer"}
	if st.Expiry != 0 {
		tok.Expiry = time.Unix(st.Expiry, 0)
	}
	return tok, time.Unix(st.Obtained, 0), nil
}

// DeleteToken forgets the stored token of account id.
func (s *Store) DeleteToken(ctx context.Context, id int64) error {
	err := s.Storage.Delete(ctx, s.tokenKey(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// FreshToken returns the token of account id, refreshed first when it has
// a refresh token and need says so (need sees the stored token and when
// it was obtained). The refresh runs under a storage lock, so gateway
// instances sharing the storage never spend the same (single-use)
// refresh token twice.
func (s *Store) FreshToken(ctx context.Context, id int64, need func(tok *oauth2.Token, obtained time.Time) bool, refresh func(context.Context, *oauth2.Token) (*oauth2.Token, error)) (*oauth2.Token, error) {
	tok, obtained, err := s.loadToken(ctx, id)
	if err != nil {
		return nil, err
	}
	if tok.RefreshToken == "" || !need(tok, obtained) {
		return tok, nil
	}
	lock := s.tokenKey(id) + ".refresh"
	if err := s.Storage.Lock(ctx, lock); err != nil {
		return nil, fmt.Errorf("lock token: %w", err)
	}
	defer func() { _ = s.Storage.Unlock(context.WithoutCancel(ctx), lock) }()
	// Another instance may have refreshed it while we waited.
	if cur, when, err := s.loadToken(ctx, id); err == nil {
		tok, obtained = cur, when
	}
	if tok.RefreshToken == "" || !need(tok, obtained) {
		return tok, nil
	}
	nt, err := refresh(ctx, tok)
	if err != nil {
		return nil, err
	}
	if err := s.SaveToken(ctx, id, nt); err != nil {
		return nil, err
	}
	return nt, nil
}

// EscapeKey escapes a user name for a storage key injectively: [a-z0-9]
// stay, every other byte becomes _xx (hex), as container names do.
func EscapeKey(s string) string {
	const hex = "0123456789abcdef"
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b = append(b, c)
			continue
		}
		b = append(b, '_', hex[c>>4], hex[c&0x0f])
	}
	return string(b)
}
