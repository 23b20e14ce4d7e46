package redisstorage

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLockMutualExclusion has two replicas (each its own Storage and
// client) with many goroutines each fight over one lock: never are two
// inside at once, and every one gets in.
func TestLockMutualExclusion(t *testing.T) {
	srv := startRedis(t)
	replicas := []*Storage{newStorage(t, srv, "mx", 0), newStorage(t, srv, "mx", 0)}
	const perReplica, rounds = 8, 10
	var inside, maxInside, entries atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 2*perReplica*rounds)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, st := range replicas {
		for range perReplica {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range rounds {
					if err := st.Lock(ctx, "cull"); err != nil {
						errs <- err
						return
					}
					n := inside.Add(1)
					for m := maxInside.Load(); n > m && !maxInside.CompareAndSwap(m, n); m = maxInside.Load() {
					}
					entries.Add(1)
					time.Sleep(time.Millisecond)
					inside.Add(-1)
					if err := st.Unlock(ctx, "cull"); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if maxInside.Load() != 1 {
		t.Fatalf("%d holders were inside at once", maxInside.Load())
	}
	if want := int64(2 * perReplica * rounds); entries.Load() != want {
		t.Fatalf("%d entries, want %d", entries.Load(), want)
	}
	if n, _ := srv.client(t).Exists(ctx, "mx:lock:cull").Result(); n != 0 {
		t.Fatal("lock key left behind after the last Unlock")
	}
}

// TestLockRenewedWhileHeld holds a lock for several TTLs: the renewal keeps
// it, so another replica cannot take it until it is released.
func TestLockRenewedWhileHeld(t *testing.T) {
	srv := startRedis(t)
	ttl := time.Second
	a, b := newStorage(t, srv, "renew", ttl), newStorage(t, srv, "renew", ttl)
	ctx := context.Background()
	if err := a.Lock(ctx, "job"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * ttl); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ok, err := b.TryLock(ctx, "job")
		if err != nil || ok {
			t.Fatalf("replica b got a held lock after %s: %t, %v", time.Until(deadline), ok, err)
		}
	}
	if err := a.Unlock(ctx, "job"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.TryLock(ctx, "job"); !ok || err != nil {
		t.Fatalf("replica b could not take a released lock: %t, %v", ok, err)
	}
	if err := b.Unlock(ctx, "job"); err != nil {
		t.Fatal(err)
	}
}

// TestLockExpiresWhenHolderDies kills (SIGKILL) a process holding a lock:
// another replica gets it once the TTL has run out, not before.
func TestLockExpiresWhenHolderDies(t *testing.T) {
	srv := startRedis(t)
	ttl := 2 * time.Second
	holder := startHolder(t, srv, "dies", "cull", ttl)
	b := newStorage(t, srv, "dies", ttl)
	ctx := context.Background()
	// The holder renews: past its TTL the lock is still taken.
	time.Sleep(ttl + 500*time.Millisecond)
	if ok, err := b.TryLock(ctx, "cull"); ok || err != nil {
		t.Fatalf("took the lock of a live holder: %t, %v", ok, err)
	}
	if err := holder.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	lctx, cancel := context.WithTimeout(ctx, 3*ttl)
	defer cancel()
	if err := b.Lock(lctx, "cull"); err != nil {
		t.Fatalf("lock of a dead holder not taken over within %s: %v", 3*ttl, err)
	}
	took := time.Since(killed)
	t.Logf("lock taken over %s after the holder was killed (lock_ttl %s)", took.Round(time.Millisecond), ttl)
	if took > ttl+time.Second {
		t.Fatalf("took %s, want at most lock_ttl (%s) + 1s", took, ttl)
	}
	if err := b.Unlock(ctx, "cull"); err != nil {
		t.Fatal(err)
	}
}

// TestUnlockOnlyByOwner: a replica cannot release another's lock, and a
// holder whose lock expired and was taken over does not release the new
// holder's lock.
func TestUnlockOnlyByOwner(t *testing.T) {
	srv := startRedis(t)
	ttl := time.Second
	a, b := newStorage(t, srv, "owner", ttl), newStorage(t, srv, "owner", ttl)
	ctx := context.Background()
	if err := a.Lock(ctx, "job"); err != nil {
		t.Fatal(err)
	}
	if err := b.Unlock(ctx, "job"); err == nil {
		t.Fatal("replica b unlocked replica a's lock")
	}
	if ok, _ := b.TryLock(ctx, "job"); ok {
		t.Fatal("replica b's Unlock released a's lock")
	}

	// a stops renewing (as if it were stuck), the lock expires, b takes it.
	a.mu.Lock()
	stuck := a.held["job"][0]
	a.mu.Unlock()
	stuck.stop()
	lctx, cancel := context.WithTimeout(ctx, 3*ttl)
	defer cancel()
	if err := b.Lock(lctx, "job"); err != nil {
		t.Fatalf("b did not get the expired lock: %v", err)
	}
	if err := a.Unlock(ctx, "job"); !errors.Is(err, ErrLockLost) {
		t.Fatalf("a's Unlock of a lost lock: %v; want ErrLockLost", err)
	}
	c := newStorage(t, srv, "owner", ttl)
	if ok, _ := c.TryLock(ctx, "job"); ok {
		t.Fatal("a's late Unlock released b's lock")
	}
	if err := b.Unlock(ctx, "job"); err != nil {
		t.Fatal(err)
	}
}

// TestLockWaitHonoursContext: waiting for a held lock ends when the
// context does.
func TestLockWaitHonoursContext(t *testing.T) {
	srv := startRedis(t)
	a, b := newStorage(t, srv, "ctx", 0), newStorage(t, srv, "ctx", 0)
	if err := a.Lock(context.Background(), "job"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := b.Lock(ctx, "job")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock on a held lock: %v; want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Lock returned %s after its context ended", took-300*time.Millisecond)
	}
}
