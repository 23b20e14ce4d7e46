package hub

import (
	"context"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/hubgate/hubgate/spawner"
)

// cullLoop stops servers idle past their idle timeout or older than their
// maximum age, every cullEvery, until the hub is destroyed. Their volumes
// stay.
func (rt *Runtime) cullLoop() {
	for {
		every := time.Duration(rt.cullEvery.Load())
		if every <= 0 {
			every = DefaultCullInterval
		}
		select {
		case <-rt.ctx.Done():
			return
		case <-time.After(every):
		}
		rt.cullOnce(time.Now())
	}
}

// cullOnce lists the running servers (one engine call), updates the
// gauges and stops the ones past their limits.
func (rt *Runtime) cullOnce(now time.Time) {
	ctx, cancel := context.WithTimeout(rt.ctx, time.Minute)
	defer cancel()
	insts, err := rt.spawner.List(ctx)
	if err != nil {
		rt.logger.Warn("culler could not list servers", zap.Error(err))
		return
	}
	// The listing also repairs the route cache, should an exit event
	// have been missed.
	rt.syncRoutes(insts)
	// Every replica reads the others' activity (for the admin page, and
	// to cull right should it take the lease); only the lease holder
	// stops servers.
	shared, idleKnown := rt.readShared(ctx, insts)
	holder := rt.holdsLease(now)
	users := make(map[string]struct{})
	running := 0
	for _, inst := range insts {
		if !inst.Running {
			continue
		}
		running++
		users[inst.User] = struct{}{}
		reason, idle := rt.cullReason(inst, now, shared)
		if reason == "" || !holder || (reason == "idle" && !idleKnown) {
			continue
		}
		if err := rt.spawner.Stop(ctx, inst.User, inst.Server); err != nil {
			rt.logger.Error("culling a server failed", zap.String("user", inst.User), zap.String("server", inst.Server), zap.Error(err))
			continue
		}
		if r, ok := rt.routes.Peek(Key(inst.User, inst.Server)); ok {
			rt.Forget(r)
		}
		running--
		metrics.culls.WithLabelValues(reason).Inc()
		rt.audit.Info("cull", zap.String("user", inst.User), zap.String("server", inst.Server),
			zap.String("reason", reason), zap.Duration("idle", idle), zap.Duration("age", now.Sub(inst.Created)),
			zap.String("container_id", shortID(inst.ID)))
	}
	metrics.running.Set(float64(running))
	metrics.activeUsers.Set(float64(len(users)))
}

// readShared reads the activity every replica recorded and notes it on
// the routes. Without sharing it returns nil and true; when the records
// cannot be read it returns false: idle time is then unknown, and no one
// is culled for idleness.
func (rt *Runtime) readShared(ctx context.Context, insts []spawner.Instance) (map[string]int64, bool) {
	s := rt.shared.cfg.Load()
	if s == nil {
		return nil, true
	}
	running := make(map[string]string, len(insts))
	for _, inst := range insts {
		if inst.Running {
			running[Key(inst.User, inst.Server)] = inst.ID
		}
	}
	acts, err := rt.sharedActivity(ctx, *s, running, rt.holdsLease(time.Now()))
	if err != nil {
		rt.logger.Warn("reading shared activity failed; no server is culled for idleness until it is read", zap.Error(err))
		return nil, false
	}
	for key, t := range acts {
		if r, ok := rt.routes.Peek(key); ok && r.inst.ID == running[key] && t > r.sharedActivity.Load() {
			r.sharedActivity.Store(t)
		}
	}
	return acts, true
}

// cullReason says why inst must be stopped now ("idle", "max_age") or "".
// Idle time counts from the latest of the container's creation, the
// activity this replica proxied and the activity shared (from every
// replica). A server of which nothing is known but its creation counts
// from this gateway's start, too.
func (rt *Runtime) cullReason(inst spawner.Instance, now time.Time, shared map[string]int64) (string, time.Duration) {
	last := inst.Created
	key := Key(inst.User, inst.Server)
	known := false
	if t, ok := shared[key]; ok {
		known = true
		if tt := time.Unix(0, t); tt.After(last) {
			last = tt
		}
	}
	if r, ok := rt.routes.Peek(key); ok {
		if t := time.Unix(0, r.lastActivity.Load()); t.After(last) {
			last = t
			known = known || t.After(inst.Created)
		}
	}
	if !known && rt.started.After(last) {
		last = rt.started
	}
	idle := now.Sub(last)
	if maxAge := metaDuration(inst.Meta, MetaMaxAge); maxAge > 0 && !inst.Created.IsZero() && now.Sub(inst.Created) > maxAge {
		return "max_age", idle
	}
	if timeout := metaDuration(inst.Meta, MetaIdleTimeout); timeout > 0 && idle > timeout {
		return "idle", idle
	}
	return "", idle
}

func metaDuration(meta map[string]string, key string) time.Duration {
	secs, err := strconv.ParseFloat(meta[key], 64)
	if err != nil || secs <= 0 {
		return 0
	}
	return time.Duration(secs * float64(time.Second))
}
