// Package tokens keeps users' personal API tokens: minted once and shown
// once, stored hashed in Caddy's storage (so every replica sharing the
// storage agrees), looked up by the id carried in the token itself, and
// revoked by deleting the record.
//
// A token reads "hgp_<id>_<secret>": <id> is 12 hex digits naming the
// record (one storage read, no scan), <secret> 256 random bits. The record
// holds only the SHA-256 of the whole token, compared in constant time.
//
// Records are cached per id for CacheTTL; a revocation on this instance
// drops the cached record at once, on another instance sharing the storage
// the record is read again at most CacheTTL later (the revocation
// staleness bound).
//
// The package knows nothing of HTTP, sessions or policies: callers decide
// what a token may reach.
package tokens

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/caddyserver/certmagic"
	lru "github.com/hashicorp/golang-lru/v2"
)

// Prefix starts every personal token, so a client's Authorization header
// is told apart from other credentials (the policy's admin API tokens)
// without a lookup.
const Prefix = "hgp_"

// Defaults and bounds.
const (
	// DefaultCacheTTL is how long a record read from storage is trusted:
	// the bound on how late another instance sees a revocation.
	DefaultCacheTTL = 10 * time.Second
	// MaxPerUser bounds the tokens one user may hold.
	MaxPerUser = 50
	// MaxNote bounds a token's note (its name), in bytes.
	MaxNote  = 200
	idLen    = 12 // hex digits
	cacheLen = 10000
	opTimout = 5 * time.Second
)

// Errors a lookup or a change reports.
var (
	// ErrMalformed: not a personal token at all.
	ErrMalformed = errors.New("not a personal API token")
	// ErrUnknown: no such token (never made, revoked, or another user's).
	ErrUnknown = errors.New("unknown or revoked token")
	// ErrExpired: the token's expiry has passed.
	ErrExpired = errors.New("token expired")
	// ErrTooMany: the user holds MaxPerUser tokens already.
	ErrTooMany = fmt.Errorf("at most %d tokens per user; revoke one first", MaxPerUser)
)

// Record is a stored token: who it belongs to and what it may reach,
// never the token itself.
type Record struct {
	// ID names the token in URLs and in the audit log; it is not secret.
	ID string `json:"id"`
	// Hash is the hex SHA-256 of the whole token.
	Hash string `json:"hash"`
	// User is the owner's canonical name.
	User string `json:"user"`
	// Groups are the identity-provider groups of the session the token
	// was made in; the policy is checked against them on every use.
	Groups []string `json:"groups,omitempty"`
	// Note is the token's name, as its owner gave it.
	Note string `json:"note"`
	// Server, if set, is the one server key the token reaches; empty: all
	// of the owner's servers and their part of the API.
	Server string `json:"server,omitempty"`
	// Created and Expires (zero: never) are when the token was made and
	// stops working.
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"`
	// By says how it was made: "home page" or "api" (and with which token).
	By string `json:"by,omitempty"`
}

// Expired reports whether the record's expiry has passed at now.
func (r *Record) Expired(now time.Time) bool {
	return !r.Expires.IsZero() && !now.Before(r.Expires)
}

// Params are what a new token is made with.
type Params struct {
	User   string
	Groups []string
	Note   string
	Server string
	// TTL is the token's lifetime; 0 means it does not expire.
	TTL time.Duration
	By  string
}

// Store keeps the tokens of one deployment.
type Store struct {
	st     certmagic.Storage
	prefix string
	ttl    time.Duration
	now    func() time.Time
	cache  *lru.Cache[string, cached]

	mu   sync.Mutex
	used map[string]*use // by id: uses seen by this instance
}

type use struct{ last, audited time.Time }

type cached struct {
	rec *Record // nil: not found
	at  time.Time
}

// New returns the store keeping tokens under prefix ("hubgate/<name>")
// in st; ttl <= 0 means DefaultCacheTTL.
func New(st certmagic.Storage, prefix string, ttl time.Duration) *Store {
	if ttl <= 0 {
		ttl = DefaultCacheTTL
	}
	c, _ := lru.New[string, cached](cacheLen)
	return &Store{st: st, prefix: prefix, ttl: ttl, now: time.Now, cache: c, used: map[string]*use{}}
}

// CacheTTL is the revocation staleness bound across instances.
func (s *Store) CacheTTL() time.Duration { return s.ttl }

// IsToken reports whether an Authorization credential is shaped like a
// personal token (it may still be unknown).
func IsToken(credential string) bool { return strings.HasPrefix(credential, Prefix) }

func (s *Store) recordKey(id string) string { return s.prefix + "/tokens/id/" + id }
func (s *Store) userDir(user string) string {
	return s.prefix + "/tokens/user/" + hex.EncodeToString([]byte(user))
}

// parse splits a token into its id, checking its shape only.
func parse(token string) (id string, ok bool) {
	rest, found := strings.CutPrefix(token, Prefix)
	if !found || len(rest) != idLen+1+43 || rest[idLen] != '_' {
		return "", false
	}
	id = rest[:idLen]
	if _, err := hex.DecodeString(id); err != nil || strings.ToLower(id) != id {
		return "", false
	}
	if _, err := base64.RawURLEncoding.DecodeString(rest[idLen+1:]); err != nil {
		return "", false
	}
	return id, true
}

func hashOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// ValidNote checks a token's name: 1 to MaxNote bytes of printable text.
func ValidNote(note string) error {
	if strings.TrimSpace(note) == "" {
		return errors.New("give the token a name, such as \"laptop\" or \"vscode\"")
	}
	if len(note) > MaxNote {
		return fmt.Errorf("the token's name is longer than %d bytes", MaxNote)
	}
	if strings.IndexFunc(note, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) >= 0 {
		return errors.New("the token's name has control or invisible characters")
	}
	return nil
}

// Mint makes a token, stores its record and returns the token (the only
// time it exists in the clear) with the record.
func (s *Store) Mint(ctx context.Context, p Params) (string, Record, error) {
	if p.User == "" {
		return "", Record{}, errors.New("mint token: no user")
	}
	if err := ValidNote(p.Note); err != nil {
		return "", Record{}, err
	}
	if p.TTL < 0 {
		return "", Record{}, errors.New("mint token: negative lifetime")
	}
	ctx, cancel := context.WithTimeout(ctx, opTimout)
	defer cancel()
	ids, err := s.userIDs(ctx, p.User)
	if err != nil {
		return "", Record{}, err
	}
	if len(ids) >= MaxPerUser {
		return "", Record{}, ErrTooMany
	}
	var idb [idLen / 2]byte
	var secret [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", Record{}, fmt.Errorf("mint token: %w", err)
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return "", Record{}, fmt.Errorf("mint token: %w", err)
	}
	id := hex.EncodeToString(idb[:])
	if s.st.Exists(ctx, s.recordKey(id)) {
		return "", Record{}, errors.New("mint token: id collision, try again")
	}
	token := Prefix + id + "_" + base64.RawURLEncoding.EncodeToString(secret[:])
	now := s.now().UTC().Truncate(time.Second)
	rec := Record{ID: id, Hash: hashOf(token), User: p.User, Groups: slices.Clone(p.Groups), Note: strings.TrimSpace(p.Note),
		Server: p.Server, Created: now, By: p.By}
	if p.TTL > 0 {
		rec.Expires = now.Add(p.TTL)
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return "", Record{}, fmt.Errorf("mint token: %w", err)
	}
	// The record is what authenticates; the user's index only lists. The
	// record goes first, so a failure leaves no index entry without one.
	if err := s.st.Store(ctx, s.recordKey(id), raw); err != nil {
		return "", Record{}, fmt.Errorf("store token: %w", err)
	}
	if err := s.st.Store(ctx, s.userDir(p.User)+"/"+id, []byte(id)); err != nil {
		_ = s.st.Delete(context.WithoutCancel(ctx), s.recordKey(id))
		return "", Record{}, fmt.Errorf("store token index: %w", err)
	}
	s.cache.Add(id, cached{rec: &rec, at: s.now()})
	return token, rec, nil
}

// Check returns the record of a valid token: well-formed, stored, its
// hash equal (constant time), not expired. A storage failure is an error
// (the caller refuses: it fails closed).
func (s *Store) Check(ctx context.Context, token string) (Record, error) {
	id, ok := parse(token)
	if !ok {
		return Record{}, ErrMalformed
	}
	rec, err := s.record(ctx, id)
	if err != nil {
		return Record{}, err
	}
	if subtle.ConstantTimeCompare([]byte(hashOf(token)), []byte(rec.Hash)) != 1 {
		return Record{}, ErrUnknown
	}
	if rec.Expired(s.now()) {
		return *rec, ErrExpired
	}
	return *rec, nil
}

// Valid reports whether the token with this id still exists and has not
// expired (for re-checking open websockets); a storage failure counts as
// valid, so a storage outage does not cut open connections.
func (s *Store) Valid(ctx context.Context, id string) bool {
	rec, err := s.record(ctx, id)
	if errors.Is(err, ErrUnknown) {
		return false
	}
	return err != nil || !rec.Expired(s.now())
}

// record reads a record through the cache.
func (s *Store) record(ctx context.Context, id string) (*Record, error) {
	if c, ok := s.cache.Get(id); ok && s.now().Sub(c.at) < s.ttl {
		if c.rec == nil {
			return nil, ErrUnknown
		}
		return c.rec, nil
	}
	ctx, cancel := context.WithTimeout(ctx, opTimout)
	defer cancel()
	raw, err := s.st.Load(ctx, s.recordKey(id))
	if errors.Is(err, fs.ErrNotExist) {
		s.cache.Add(id, cached{at: s.now()})
		return nil, ErrUnknown
	}
	if err != nil {
		return nil, fmt.Errorf("load token %s: %w", id, err)
	}
	var rec Record
	if err := json.Unmarshal(raw, &rec); err != nil || rec.ID != id || rec.User == "" || len(rec.Hash) != 64 {
		return nil, fmt.Errorf("token %s in storage is damaged", id)
	}
	s.cache.Add(id, cached{rec: &rec, at: s.now()})
	return &rec, nil
}

// userIDs lists the ids in a user's index.
func (s *Store) userIDs(ctx context.Context, user string) ([]string, error) {
	keys, err := s.st.List(ctx, s.userDir(user), false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		ids = append(ids, k[strings.LastIndex(k, "/")+1:])
	}
	return ids, nil
}

// List returns a user's tokens, oldest first (expired ones included, so
// their owner sees them and can remove them).
func (s *Store) List(ctx context.Context, user string) ([]Record, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimout)
	defer cancel()
	ids, err := s.userIDs(ctx, user)
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(ids))
	for _, id := range ids {
		rec, err := s.record(ctx, id)
		if errors.Is(err, ErrUnknown) {
			continue // an index entry whose record is gone (a revocation half done)
		}
		if err != nil {
			return nil, err
		}
		if rec.User == user {
			out = append(out, *rec)
		}
	}
	slices.SortFunc(out, func(a, b Record) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Get returns one of user's tokens by id.
func (s *Store) Get(ctx context.Context, user, id string) (Record, error) {
	if len(id) != idLen {
		return Record{}, ErrUnknown
	}
	rec, err := s.record(ctx, id)
	if err != nil {
		return Record{}, err
	}
	if rec.User != user {
		return Record{}, ErrUnknown
	}
	return *rec, nil
}

// Revoke deletes one of user's tokens: on this instance it stops working
// at once, on others within CacheTTL.
func (s *Store) Revoke(ctx context.Context, user, id string) (Record, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimout)
	defer cancel()
	s.cache.Remove(id) // read the record afresh: it may be revoked already elsewhere
	rec, err := s.Get(ctx, user, id)
	if err != nil {
		return Record{}, err
	}
	if err := s.st.Delete(ctx, s.recordKey(id)); err != nil {
		return Record{}, fmt.Errorf("revoke token: %w", err)
	}
	s.cache.Add(id, cached{at: s.now()})
	_ = s.st.Delete(ctx, s.userDir(user)+"/"+id) // only the listing; the record is gone
	s.mu.Lock()
	delete(s.used, id)
	s.mu.Unlock()
	return rec, nil
}

// Used records a use of the token now and reports whether it is the
// first use seen by this instance within every (for the audit log: one
// "token used" record per token per interval) and the use before.
func (s *Store) Used(id string, every time.Duration) (first bool, last time.Time) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.used[id]
	if u == nil {
		u = new(use)
		s.used[id] = u
	}
	last = u.last
	u.last = now
	if !u.audited.IsZero() && now.Sub(u.audited) < every {
		return false, last
	}
	u.audited = now
	return true, last
}

// LastUsed is when this instance last saw the token used (zero: not
// since it started).
func (s *Store) LastUsed(id string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.used[id]; u != nil {
		return u.last
	}
	return time.Time{}
}
