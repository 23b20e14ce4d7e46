package login

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// threeReplicas is the login state of three replicas on one real
// file_system storage.
func threeReplicas(t *testing.T) ([]*State, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "storage")
	st := &certmagic.FileStorage{Path: dir}
	var out []*State
	for _, id := range []string{"a", "b", "c"} {
		s := NewState(st, "hubgate/t")
		s.limiter.configure(5, 20, time.Minute)
		s.Share(st, id)
		out = append(out, s)
	}
	return out, dir
}

func TestFailureLimitHoldsAcrossReplicas(t *testing.T) {
	states, _ := threeReplicas(t)
	ctx := context.Background()
	now := time.Now()
	passed := 0
	for i := range 12 {
		blocked, wait, err := states[i%3].loginAttempt(ctx, "mallory", "10.0.0.1", now)
		if err != nil {
			t.Fatal(err)
		}
		if !blocked {
			passed++
		} else if wait <= 0 || wait > time.Minute {
			t.Errorf("attempt %d blocked for %s", i, wait)
		}
	}
	if passed != 5 {
		t.Fatalf("%d attempts passed on 3 replicas, want the limit, 5", passed)
	}
	// Another user from the same IP is not blocked (5 < 20 per IP), and a
	// good login clears the user's failures on every replica.
	if blocked, _, _ := states[1].loginAttempt(ctx, "alice", "10.0.0.1", now); blocked {
		t.Fatal("alice blocked by mallory's failures")
	}
	states[1].loginSucceeded(ctx, "mallory", "10.0.0.1")
	// (Replica c still counts its own one attempt until its window
	// ends; the stored counts of the others are gone.)
	if blocked, _, _ := states[2].loginAttempt(ctx, "mallory", "10.0.0.1", now); blocked {
		t.Fatal("mallory still blocked on another replica after a good login")
	}
	// Windows end: old counts of other replicas do not block.
	later := now.Add(2 * time.Minute)
	for range 4 {
		states[0].loginAttempt(ctx, "bob", "10.0.0.2", now)
	}
	if blocked, _, _ := states[1].loginAttempt(ctx, "bob", "10.0.0.2", later); blocked {
		t.Fatal("counts of an ended window still block")
	}
}

func TestUsedStateRefusedOnEveryReplica(t *testing.T) {
	states, dir := threeReplicas(t)
	ctx := context.Background()
	ok, err := states[0].consumeStateShared(ctx, "state-1")
	if err != nil || !ok {
		t.Fatalf("first use: %v %v", ok, err)
	}
	for i, s := range states {
		if ok, err := s.consumeStateShared(ctx, "state-1"); err != nil || ok {
			t.Errorf("replay on replica %d accepted (%v)", i, err)
		}
	}
	// The storage down: refused with errStorage, not accepted uncounted.
	if err := os.Rename(dir, dir+".down"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("down"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, err := states[1].consumeStateShared(ctx, "state-2"); ok || err == nil {
		t.Errorf("a state was accepted with the storage down: %v %v", ok, err)
	}
	if _, _, err := states[1].loginAttempt(ctx, "alice", "10.0.0.3", time.Now()); err == nil {
		t.Error("a login attempt was counted with the storage down")
	}
}

// TestConcurrentGoodLoginsFromOneAddress: a class behind one NAT address
// logging in at once. Every attempt is counted before its password check
// and taken back after it; with the counts in a file storage, concurrent
// writes of one replica's record once left temporary files that other
// replicas counted as failures (a 429 after a few hundred good logins)
// and removed mid-write (a 503).
func TestConcurrentGoodLoginsFromOneAddress(t *testing.T) {
	states, _ := threeReplicas(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 600)
	// 12 at once: fewer than the limit of 20 in flight, which counts
	// attempts whose password is still being checked.
	for g := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := states[g%3]
			for i := range 50 {
				user := fmt.Sprintf("u%d-%d", g, i)
				blocked, _, err := s.loginAttempt(ctx, user, "10.0.0.9", time.Now())
				if err != nil || blocked {
					errs <- fmt.Errorf("login %d of %s: blocked %v, err %v", i, user, blocked, err)
					return
				}
				s.loginSucceeded(ctx, user, "10.0.0.9")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, s := range states {
		if blocked, _, err := s.loginAttempt(ctx, "late", "10.0.0.9", time.Now()); err != nil || blocked {
			t.Fatalf("replica %d after 600 good logins: blocked %v, err %v", i, blocked, err)
		}
	}
}

// writeFailing is a file storage whose writes fail while down is set:
// it can be read (listed, loaded) but not written, as a full disk or a
// read-only remount does.
type writeFailing struct {
	*certmagic.FileStorage
	down atomic.Bool
}

func (w *writeFailing) Store(ctx context.Context, key string, value []byte) error {
	if w.down.Load() {
		return fmt.Errorf("write %s: no space left on device", key)
	}
	return w.FileStorage.Store(ctx, key, value)
}

// TestStorageOutageLocksNobodyOut: logins refused while the storage could
// not be written are not counted, so once it answers again the address
// (a lab behind one NAT) and the user may log in; before, each refused
// attempt stayed counted: 5 of one user's blocked the user, 20 from one
// address blocked everyone behind it, for the window.
func TestStorageOutageLocksNobodyOut(t *testing.T) {
	st := &writeFailing{FileStorage: &certmagic.FileStorage{Path: t.TempDir()}}
	s := NewState(st, "hubgate/t")
	s.limiter.configure(5, 20, time.Minute)
	s.Share(st, "a")
	ctx := context.Background()
	st.down.Store(true)
	// 30 users behind one address (each under the per-user limit), then
	// one user 10 times.
	var users []string
	for i := range 30 {
		users = append(users, fmt.Sprintf("u%02d", i))
	}
	for range 10 {
		users = append(users, "alice")
	}
	for i, u := range users {
		blocked, _, err := s.loginAttempt(ctx, u, "10.0.0.4", time.Now())
		if err == nil || blocked {
			t.Fatalf("attempt %d (%s) with the storage down: blocked %v, err %v; want a storage error", i, u, blocked, err)
		}
	}
	st.down.Store(false)
	for _, u := range []string{"newcomer", "alice"} {
		if blocked, wait, err := s.loginAttempt(ctx, u, "10.0.0.4", time.Now()); err != nil || blocked {
			t.Fatalf("%s after the outage: blocked %v (for %s), err %v", u, blocked, wait, err)
		}
	}
	if w := s.limiter.current("ip", "10.0.0.4"); w.count != 2 {
		t.Errorf("the address's count after the outage and two attempts is %d, want 2", w.count)
	}
}
