package redisstorage

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// heldLock is a lock this instance holds: its token, and the renewer that
// keeps it alive.
type heldLock struct {
	name    string
	token   string
	cancel  context.CancelFunc
	renewed chan struct{} // closed when the renewer has stopped
}

// stop stops the renewer and waits for it.
func (h *heldLock) stop() {
	h.cancel()
	<-h.renewed
}

// renewScript extends the lock's expiry if it still holds our token.
// KEYS[1] is the lock key, ARGV[1] the token, ARGV[2] the TTL in ms.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// unlockScript deletes the lock if it still holds our token.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// ErrLockLost is returned by Unlock when the lock had expired (it was not
// renewed in time, say while Redis was unreachable) and may have been taken
// by another holder, which Unlock leaves alone.
var ErrLockLost = errors.New("lock no longer held (it expired or another holder took it over)")

// newToken returns a random owner token.
func newToken() string {
	b := make([]byte, 16)
	_, _ = crand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// Lock acquires the named lock, waiting while another holder has it, until
// ctx is done. Redis errors end the wait with the error: a caller never
// waits forever on a server that is down.
func (s *Storage) Lock(ctx context.Context, name string) error {
	for {
		ok, err := s.TryLock(ctx, name)
		if err != nil || ok {
			return err
		}
		// Jitter spreads replicas that wait for the same lock.
		wait := s.opts.pollInterval/2 + rand.N(s.opts.pollInterval)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for lock %q: %w", name, ctx.Err())
		case <-t.C:
		}
	}
}

// TryLock acquires the named lock if it is free and reports whether it did.
func (s *Storage) TryLock(ctx context.Context, name string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("lock %q: %w", name, err)
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return false, fmt.Errorf("lock %q: %s is closed", name, s)
	}
	token := newToken()
	cctx, cancel := s.ctx(ctx)
	ok, err := s.client.SetNX(cctx, s.lprefix+name, token, s.opts.LockTTL).Result()
	cancel()
	if err != nil {
		return false, s.wrap("lock", name, err)
	}
	if !ok {
		return false, nil
	}
	rctx, stop := context.WithCancel(context.Background())
	h := &heldLock{name: name, token: token, cancel: stop, renewed: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		stop()
		s.release(name, token)
		return false, fmt.Errorf("lock %q: %s is closed", name, s)
	}
	s.held[name] = append(s.held[name], h)
	s.mu.Unlock()
	go s.renew(rctx, h)
	return true, nil
}

// release deletes the lock if it still holds token, best effort.
func (s *Storage) release(name, token string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	_ = unlockScript.Run(ctx, s.client, []string{s.lprefix + name}, token).Err()
}

// renew keeps h's lock alive, every third of LockTTL, until ctx is done or
// the lock turns out lost.
func (s *Storage) renew(ctx context.Context, h *heldLock) {
	defer close(h.renewed)
	every := s.opts.LockTTL / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, every)
		n, err := renewScript.Run(cctx, s.client, []string{s.lprefix + h.name}, h.token, formatTTL(s.opts.LockTTL)).Int()
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.logger.Warn("could not renew storage lock; retrying",
				zap.String("lock", h.name), zap.Error(err))
		case n == 0:
			s.logger.Error("storage lock lost: it expired before it could be renewed",
				zap.String("lock", h.name))
			return
		}
	}
}

// RenewLockLease sets the expiry of a lock this instance holds to
// leaseDuration from now (the background renewal then carries on with
// LockTTL). It implements certmagic.LockLeaseRenewer.
func (s *Storage) RenewLockLease(ctx context.Context, name string, leaseDuration time.Duration) error {
	s.mu.Lock()
	hs := s.held[name]
	s.mu.Unlock()
	if len(hs) == 0 {
		return fmt.Errorf("renew lock %q: not held by this instance", name)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := renewScript.Run(ctx, s.client, []string{s.lprefix + name}, hs[0].token, formatTTL(leaseDuration)).Int()
	if err != nil {
		return s.wrap("renew lock", name, err)
	}
	if n == 0 {
		return fmt.Errorf("renew lock %q: %w", name, ErrLockLost)
	}
	return nil
}

// Unlock releases the named lock, which this instance must hold: it stops
// the renewal and deletes the lock only if it still holds this instance's
// token. If the lock had expired meanwhile, it returns ErrLockLost and
// leaves whoever holds the lock now alone. Should two goroutines of this
// instance hold the same name (possible only after a lock was lost), the
// oldest is released first.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	hs := s.held[name]
	if len(hs) == 0 {
		s.mu.Unlock()
		return fmt.Errorf("unlock %q: not held by this instance", name)
	}
	h := hs[0]
	if len(hs) == 1 {
		delete(s.held, name)
	} else {
		s.held[name] = hs[1:]
	}
	s.mu.Unlock()
	h.stop()
	cctx, cancel := s.ctx(context.WithoutCancel(ctx))
	defer cancel()
	n, err := unlockScript.Run(cctx, s.client, []string{s.lprefix + name}, h.token).Int()
	if err != nil {
		return s.wrap("unlock", name, err)
	}
	if n == 0 {
		return fmt.Errorf("unlock %q: %w", name, ErrLockLost)
	}
	return nil
}
