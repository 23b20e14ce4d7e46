package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// What several replicas of one deployment share through Caddy's storage
// (see README "Several replicas"):
//
//   - activity: each replica writes, at most once per ActivityFlush and
//     only when it changed, one record with the last activity it saw per
//     server (never per request); every replica reads them all each cull
//     interval, so the admin page and the culler see traffic proxied by
//     any replica, and a restarted replica does not reset anyone's idle
//     time;
//   - the cull lease: one record naming the replica that culls and until
//     when; its holder renews it every LeaseTTL/3, and any other replica
//     takes it once it expired, so culling moves within LeaseTTL +
//     LeaseTTL/3 when its holder dies (at once when it shuts down);
//   - whether the storage answers: the lease round trip (a lock, a read,
//     a write) is the probe; while it fails, new starts are refused with
//     ErrStorageDown and running servers are served as before.

// Storage is the part of Caddy's storage (a certmagic.Storage) the
// runtime shares with the other replicas.
type Storage interface {
	Lock(ctx context.Context, name string) error
	Unlock(ctx context.Context, name string) error
	Store(ctx context.Context, key string, value []byte) error
	Load(ctx context.Context, key string) ([]byte, error)
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, prefix string, recursive bool) ([]string, error)
}

// Defaults of Shared.
const (
	DefaultActivityFlush = 30 * time.Second
	DefaultLeaseTTL      = 30 * time.Second
)

// ErrStorageDown is why a start is refused while the shared storage does
// not answer.
var ErrStorageDown = errors.New("the gateway's shared storage is unreachable")

// Shared says where and how this replica shares state with the others.
type Shared struct {
	// Storage is Caddy's storage; Prefix the deployment's keys in it.
	Storage Storage
	Prefix  string
	// Replica identifies this process among the replicas.
	Replica string
	// ActivityFlush bounds how often this replica writes its activity
	// record. Default: DefaultActivityFlush.
	ActivityFlush time.Duration
	// LeaseTTL is how long a cull lease lasts unrenewed.
	// Default: DefaultLeaseTTL.
	LeaseTTL time.Duration
}

func (s Shared) leaseKey() string    { return s.Prefix + "/cull.lease" }
func (s Shared) activityDir() string { return s.Prefix + "/activity" }

// leaseRecord is the cull lease as stored.
type leaseRecord struct {
	Holder string `json:"holder"`
	// Expires is Unix nanoseconds.
	Expires int64 `json:"expires"`
}

// activityRecord is one replica's view of activity as stored.
type activityRecord struct {
	Replica string          `json:"replica"`
	At      int64           `json:"at"`
	Servers []activityEntry `json:"servers"`
}

type activityEntry struct {
	User   string `json:"user"`
	Server string `json:"server"`
	// ID is the container's; activity of an earlier container of the
	// same server does not count for a new one.
	ID string `json:"id"`
	// T is Unix nanoseconds.
	T int64 `json:"t"`
}

// sharing is the runtime's side of Shared.
type sharing struct {
	cfg atomic.Pointer[Shared]
	// leaseUntil is Unix nanoseconds until which this replica may cull.
	leaseUntil atomic.Int64
	holder     atomic.Value // string: the holder last seen
	storageOK  atomic.Bool
	failures   atomic.Int32 // lease rounds failed in a row
	kick       chan struct{}

	mu      sync.Mutex
	written map[string]int64 // what the last activity record said
}

// Share makes the runtime share activity, culling and start admission with
// the other replicas through s.Storage; it is applied on every Provision.
// Without it (tests with one process) the runtime culls alone and counts
// idle time from its own start.
func (rt *Runtime) Share(s Shared) {
	if s.ActivityFlush <= 0 {
		s.ActivityFlush = DefaultActivityFlush
	}
	if s.LeaseTTL <= 0 {
		s.LeaseTTL = DefaultLeaseTTL
	}
	first := rt.shared.cfg.Swap(&s) == nil
	if first {
		rt.shared.storageOK.Store(true)
		go rt.sharedLoop()
	} else {
		select {
		case rt.shared.kick <- struct{}{}:
		default:
		}
	}
}

// ReplicaStatus is what the health endpoint tells about sharing.
type ReplicaStatus struct {
	Shared    bool   `json:"shared"`
	Replica   string `json:"replica,omitempty"`
	CullLease bool   `json:"cull_lease"`
	Holder    string `json:"cull_lease_holder,omitempty"`
	StorageOK bool   `json:"storage_ok"`
}

// Replica reports this replica's part in sharing.
func (rt *Runtime) Replica() ReplicaStatus {
	s := rt.shared.cfg.Load()
	if s == nil {
		return ReplicaStatus{CullLease: true, StorageOK: true}
	}
	h, _ := rt.shared.holder.Load().(string)
	return ReplicaStatus{Shared: true, Replica: s.Replica, CullLease: rt.holdsLease(time.Now()), Holder: h, StorageOK: rt.shared.storageOK.Load()}
}

// StorageOK reports whether the shared storage answered its last probe
// (always true without sharing).
func (rt *Runtime) StorageOK() bool {
	return rt.shared.cfg.Load() == nil || rt.shared.storageOK.Load()
}

// holdsLease reports whether this replica may cull now.
func (rt *Runtime) holdsLease(now time.Time) bool {
	if rt.shared.cfg.Load() == nil {
		return true
	}
	return now.UnixNano() < rt.shared.leaseUntil.Load()
}

// sharedLoop renews (or tries to take) the cull lease every LeaseTTL/3 and
// writes the activity record when ActivityFlush has passed, until the
// runtime is destroyed; then it writes the record a last time and gives
// the lease up, so another replica culls at once.
func (rt *Runtime) sharedLoop() {
	defer close(rt.sharedDone)
	var lastFlush time.Time
	for {
		s := *rt.shared.cfg.Load()
		rt.leaseRound(s)
		if time.Since(lastFlush) >= s.ActivityFlush {
			lastFlush = time.Now()
			rt.flushActivity(s)
		}
		tick := min(s.LeaseTTL/3, s.ActivityFlush)
		select {
		case <-rt.ctx.Done():
			rt.flushActivity(s)
			rt.releaseLease(s)
			return
		case <-rt.shared.kick:
		case <-time.After(tick):
		}
	}
}

// leaseRound takes or renews the lease if it is free, expired or ours. Its
// success or failure is the storage's health.
func (rt *Runtime) leaseRound(s Shared) {
	// file_system's lock polls every second when another replica holds
	// it: a round may wait that long without the storage being down.
	ctx, cancel := context.WithTimeout(rt.ctx, max(s.LeaseTTL/3, 3*time.Second))
	defer cancel()
	began := time.Now()
	held, holder, err := rt.claimLease(ctx, s, began)
	if err != nil {
		// Two failed rounds in a row: the storage is down.
		if rt.shared.failures.Add(1) < 2 {
			rt.logger.Warn("shared storage round failed", zap.Error(err))
			return
		}
	} else {
		rt.shared.failures.Store(0)
	}
	wasOK := rt.shared.storageOK.Swap(err == nil)
	if err != nil {
		rt.shared.leaseUntil.Store(0)
		if wasOK {
			rt.logger.Error("shared storage unreachable: new starts are refused until it answers", zap.Error(err))
		}
		return
	}
	if !wasOK {
		rt.logger.Info("shared storage answers again")
	}
	rt.shared.holder.Store(holder)
	was := rt.holdsLease(began)
	if held {
		// Counted from before the round trip: never longer than the
		// record says.
		rt.shared.leaseUntil.Store(began.Add(s.LeaseTTL).UnixNano())
		if !was {
			rt.logger.Info("took the cull lease", zap.String("replica", s.Replica), zap.Duration("ttl", s.LeaseTTL))
		}
		return
	}
	rt.shared.leaseUntil.Store(0)
	if was {
		rt.logger.Warn("lost the cull lease", zap.String("replica", s.Replica), zap.String("holder", holder))
	}
}

// claimLease runs under the storage lock of the lease key: it reports
// whether the lease is now this replica's, and who holds it.
func (rt *Runtime) claimLease(ctx context.Context, s Shared, now time.Time) (bool, string, error) {
	key := s.leaseKey()
	if err := s.Storage.Lock(ctx, key); err != nil {
		return false, "", fmt.Errorf("lock %s: %w", key, err)
	}
	defer func() { _ = s.Storage.Unlock(context.WithoutCancel(ctx), key) }()
	var rec leaseRecord
	raw, err := s.Storage.Load(ctx, key)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return false, "", fmt.Errorf("load %s: %w", key, err)
	default:
		if json.Unmarshal(raw, &rec) != nil {
			rec = leaseRecord{}
		}
	}
	if rec.Holder != "" && rec.Holder != s.Replica && now.UnixNano() < rec.Expires {
		return false, rec.Holder, nil
	}
	raw, _ = json.Marshal(leaseRecord{Holder: s.Replica, Expires: now.Add(s.LeaseTTL).UnixNano()})
	if err := s.Storage.Store(ctx, key, raw); err != nil {
		return false, "", fmt.Errorf("store %s: %w", key, err)
	}
	return true, s.Replica, nil
}

// releaseLease gives the lease up if this replica holds it.
func (rt *Runtime) releaseLease(s Shared) {
	if !rt.holdsLease(time.Now()) {
		return
	}
	rt.shared.leaseUntil.Store(0)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	key := s.leaseKey()
	if err := s.Storage.Lock(ctx, key); err != nil {
		return
	}
	defer func() { _ = s.Storage.Unlock(context.WithoutCancel(ctx), key) }()
	var rec leaseRecord
	if raw, err := s.Storage.Load(ctx, key); err == nil && json.Unmarshal(raw, &rec) == nil && rec.Holder == s.Replica {
		if err := s.Storage.Delete(ctx, key); err == nil {
			rt.logger.Info("gave up the cull lease", zap.String("replica", s.Replica))
		}
	}
}

// flushActivity writes this replica's activity record if it changed since
// the last write: one write per ActivityFlush at most, whatever the
// traffic.
func (rt *Runtime) flushActivity(s Shared) {
	rec := activityRecord{Replica: s.Replica, At: time.Now().UnixNano()}
	now := map[string]int64{}
	changed := false
	rt.shared.mu.Lock()
	defer rt.shared.mu.Unlock()
	for _, key := range rt.routes.Keys() {
		r, ok := rt.routes.Peek(key)
		if !ok {
			continue
		}
		t := r.lastActivity.Load()
		if t <= r.inst.Created.UnixNano() {
			continue // no traffic seen here
		}
		rec.Servers = append(rec.Servers, activityEntry{User: r.user, Server: r.server, ID: r.inst.ID, T: t})
		id := key + "\x00" + r.inst.ID
		now[id] = t
		if rt.shared.written[id] != t {
			changed = true
		}
	}
	if !changed && len(now) == len(rt.shared.written) {
		return
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(rt.ctx, 10*time.Second)
	if rt.ctx.Err() != nil {
		ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	}
	defer cancel()
	if err := s.Storage.Store(ctx, s.activityDir()+"/"+s.Replica, raw); err != nil {
		rt.logger.Warn("writing activity to shared storage failed; will retry", zap.Error(err))
		return
	}
	rt.shared.written = now
}

// sharedActivity reads every replica's activity record and returns the
// latest activity per server key and container ID. It also drops records
// that name no running container (replicas gone for good) when prune is
// set.
func (rt *Runtime) sharedActivity(ctx context.Context, s Shared, running map[string]string, prune bool) (map[string]int64, error) {
	keys, err := s.Storage.List(ctx, s.activityDir(), false)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]int64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list activity: %w", err)
	}
	out := map[string]int64{}
	for _, k := range keys {
		raw, err := s.Storage.Load(ctx, k)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("load activity %s: %w", path.Base(k), err)
		}
		var rec activityRecord
		if json.Unmarshal(raw, &rec) != nil {
			continue
		}
		live := false
		for _, e := range rec.Servers {
			key := Key(e.User, e.Server)
			if running[key] != e.ID {
				continue
			}
			live = true
			if e.T > out[key] {
				out[key] = e.T
			}
		}
		if prune && !live && path.Base(k) != s.Replica && time.Since(time.Unix(0, rec.At)) > 2*s.ActivityFlush {
			_ = s.Storage.Delete(ctx, k)
		}
	}
	return out, nil
}
