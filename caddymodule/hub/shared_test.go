package hub

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/hubgate/hubgate/spawner"
	"github.com/hubgate/hubgate/spawner/spawnertest"
)

type macTokens struct{}

func (macTokens) MAC(parts ...string) []byte { return []byte("mac") }

// replicaPair is two runtimes (two replicas) on one engine and one
// real file_system storage.
func replicaPair(t *testing.T, ttl time.Duration) (*Runtime, *Runtime, *certmagic.FileStorage) {
	t.Helper()
	st := &certmagic.FileStorage{Path: filepath.Join(t.TempDir(), "storage")}
	sp := spawnertest.New()
	t.Cleanup(func() { _ = sp.Close() })
	var rts [2]*Runtime
	for i := range rts {
		rt, err := New(Options{Spawner: sp, Tokens: macTokens{}}, Config{})
		if err != nil {
			t.Fatal(err)
		}
		<-rt.warmed
		rt.Share(Shared{Storage: st, Prefix: "hubgate/t", Replica: "r" + strconv.Itoa(i), ActivityFlush: 50 * time.Millisecond, LeaseTTL: ttl})
		rts[i] = rt
		t.Cleanup(func() { _ = rt.Destruct() })
	}
	return rts[0], rts[1], st
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	began := time.Now()
	for !cond() {
		if time.Since(began) > within {
			t.Fatalf("timed out after %s: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(began)
}

func TestCullLeaseOneHolderAndTakeover(t *testing.T) {
	const ttl = 600 * time.Millisecond
	a, b, st := replicaPair(t, ttl)
	waitFor(t, 2*time.Second, "one replica holds the lease", func() bool { return a.holdsLease(time.Now()) != b.holdsLease(time.Now()) })
	for range 20 {
		if a.holdsLease(time.Now()) && b.holdsLease(time.Now()) {
			t.Fatal("both replicas hold the cull lease")
		}
		time.Sleep(ttl / 10)
	}
	holder, other := a, b
	if b.holdsLease(time.Now()) {
		holder, other = b, a
	}
	// A clean shutdown gives the lease up: the other takes it at its next
	// round (ttl/3).
	_ = holder.Destruct()
	// (file_system's lock polls every second under contention.)
	d := waitFor(t, ttl+1500*time.Millisecond, "the other replica takes the released lease", func() bool { return other.holdsLease(time.Now()) })
	t.Logf("takeover after a clean shutdown: %s", d)

	// A holder that dies leaves its record; it is taken once expired.
	raw, _ := json.Marshal(leaseRecord{Holder: "dead", Expires: time.Now().Add(ttl).UnixNano()})
	ctx := context.Background()
	if err := st.Store(ctx, "hubgate/t/cull.lease", raw); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ttl+time.Second, "the survivor sees the foreign holder", func() bool { return !other.holdsLease(time.Now()) })
	d = waitFor(t, ttl+ttl/3+1500*time.Millisecond, "the survivor takes the expired lease", func() bool { return other.holdsLease(time.Now()) })
	if d < ttl/3 {
		t.Errorf("the lease was taken %s after a live record was written, before it expired", d)
	}
}

func TestActivityOnOneReplicaCountsOnAnother(t *testing.T) {
	a, b, _ := replicaPair(t, time.Second)
	now := time.Now()
	inst := spawner.Instance{User: "alice", Server: "nb", ID: "c1", Running: true, Addr: "127.0.0.1:9", Created: now.Add(-time.Hour),
		Meta: map[string]string{MetaIdleTimeout: "60"}}
	insts := []spawner.Instance{inst}
	// Replica A was up for an hour and saw no traffic; B proxies some.
	a.started = now.Add(-time.Hour)
	a.syncRoutes(insts)
	b.syncRoutes(insts)
	if reason, _ := a.cullReason(inst, now, nil); reason != "idle" {
		t.Fatalf("without shared activity A's reason = %q, want idle", reason)
	}
	r, _ := b.routes.Peek(Key("alice", "nb"))
	r.touch()
	ctx := context.Background()
	waitFor(t, 2*time.Second, "A reads B's activity", func() bool {
		acts, ok := a.readShared(ctx, insts)
		reason, _ := a.cullReason(inst, time.Now(), acts)
		return ok && reason == ""
	})
	ra, _ := a.routes.Peek(Key("alice", "nb"))
	if got := ra.LastActivity(); time.Since(got) > 5*time.Second {
		t.Errorf("A's route shows last activity %s, want B's", got)
	}
	// Activity of another container of the same server does not count.
	other := inst
	other.ID = "c2"
	acts, _ := a.readShared(ctx, []spawner.Instance{other})
	if _, ok := acts[Key("alice", "nb")]; ok {
		t.Error("activity of container c1 counted for c2")
	}
}

func TestStartsRefusedWhileStorageDown(t *testing.T) {
	a, _, st := replicaPair(t, 300*time.Millisecond)
	if !a.StorageOK() {
		t.Fatal("storage not OK at start")
	}
	// The storage folder replaced by a file: every operation fails.
	broken := &certmagic.FileStorage{Path: filepath.Join(st.Path, "no", "such", "\x00")}
	a.Share(Shared{Storage: broken, Prefix: "hubgate/t", Replica: "r0", ActivityFlush: 50 * time.Millisecond, LeaseTTL: 300 * time.Millisecond})
	waitFor(t, 2*time.Second, "A notices the storage is down", func() bool { return !a.StorageOK() })
	if _, _, err := a.StartAndWait(context.Background(), StartRequest{User: "alice", Server: "nb"}, time.Second); err != ErrStorageDown {
		t.Fatalf("start with the storage down: %v, want ErrStorageDown", err)
	}
	a.Share(Shared{Storage: st, Prefix: "hubgate/t", Replica: "r0", ActivityFlush: 50 * time.Millisecond, LeaseTTL: 300 * time.Millisecond})
	waitFor(t, 2*time.Second, "A notices the storage is back", a.StorageOK)
}
