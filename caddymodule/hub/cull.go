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
	users := make(map[string]struct{})
	running := 0
	for _, inst := range insts {
		if !inst.Running {
			continue
		}
		running++
		users[inst.User] = struct{}{}
		reason, idle := rt.cullReason(inst, now)
		if reason == "" {
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

// cullReason says why inst must be stopped now ("idle", "max_age") or "".
func (rt *Runtime) cullReason(inst spawner.Instance, now time.Time) (string, time.Duration) {
	last := rt.started
	if inst.Created.After(last) {
		last = inst.Created
	}
	if r, ok := rt.routes.Peek(Key(inst.User, inst.Server)); ok {
		if t := time.Unix(0, r.lastActivity.Load()); t.After(last) {
			last = t
		}
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
