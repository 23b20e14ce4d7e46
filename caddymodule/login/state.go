package login

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/hubgate/hubgate/caddymodule/session"
)

// State is the login state that must outlive config reloads: the failed
// login counters, the revoked sessions, the OAuth states already used and
// the GitHub accounts being re-checked. The glue keeps one per deployment
// in a usage pool keyed by the deployment's name.
type State struct {
	limiter *limiter
	// idpCalls bounds, per client IP, the logins started at and the codes
	// exchanged with identity providers: each costs a call with hubgate's
	// client credentials, before anyone is authenticated.
	idpCalls *limiter
	revoked  *session.Revocations
	prefix   string
	// shared, once set by Share, keeps failure counts and used OAuth
	// states in storage for every replica (shared.go).
	shared atomic.Pointer[sharedStore]

	// states remembers OAuth states already used, so a callback cannot
	// be replayed even with a copy of the pre-login cookie.
	stateMu sync.Mutex
	states  *expirable.LRU[string, struct{}]

	// members are the GitHub users seen recently, whose memberships are
	// re-checked on an interval.
	ghMu    sync.RWMutex
	members map[int64]*ghMember
}

// NewState makes an empty state whose revocation records live in storage
// under prefix + "/revoked".
func NewState(storage certmagic.Storage, prefix string) *State {
	return &State{
		limiter:  newLimiter(DefaultFailuresPerUser, DefaultFailuresPerIP, DefaultFailureWindow),
		idpCalls: newLimiter(idpCallsPerIP, idpCallsPerIP, DefaultFailureWindow),
		revoked:  session.NewRevocations(storage, prefix+"/revoked"),
		prefix:   prefix,
		states:   expirable.NewLRU[string, struct{}](100000, nil, oauthStateTTL+time.Minute),
		members:  make(map[int64]*ghMember),
	}
}

// SetStorage follows a config reload that changed Caddy's storage.
func (s *State) SetStorage(storage certmagic.Storage) { s.revoked.SetStorage(storage) }

// Destruct implements caddy.Destructor; nothing runs in a State.
func (s *State) Destruct() error { return nil }

// consumeState marks an OAuth state used; it reports false if it was
// already used.
func (s *State) consumeState(state string) bool {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if s.states.Contains(state) {
		return false
	}
	s.states.Add(state, struct{}{})
	return true
}
