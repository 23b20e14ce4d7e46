package caddymodule

import (
	"context"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/hubgate/hubgate/spawner"
)

// Meta keys stored with each container (spawner.Spec.Meta), so that the
// culler and the admin page work from the engine's own record.
const (
	metaIdleTimeout = "idle_timeout_s"
	metaMaxAge      = "max_age_s"
	metaMemory      = "memory"
	metaCPUs        = "cpus"
)

// cullLoop stops servers idle past their idle timeout or older than their
// maximum age, every cullEvery, until the hub is destroyed. Their volumes
// stay.
func (hb *hub) cullLoop() {
	for {
		every := time.Duration(hb.cullEvery.Load())
		if every <= 0 {
			every = defaultCullInterval
		}
		select {
		case <-hb.ctx.Done():
			return
		case <-time.After(every):
		}
		hb.cullOnce(time.Now())
	}
}

// cullOnce lists the running servers (one engine call), updates the
// gauges and stops the ones past their limits.
func (hb *hub) cullOnce(now time.Time) {
	ctx, cancel := context.WithTimeout(hb.ctx, time.Minute)
	defer cancel()
	insts, err := hb.spawner.List(ctx)
	if err != nil {
		hb.logger.Warn("culler could not list servers", zap.Error(err))
		return
	}
	// The listing also repairs the route cache, should an exit event
	// have been missed.
	hb.syncRoutes(insts)
	users := make(map[string]struct{})
	running := 0
	for _, inst := range insts {
		if !inst.Running {
			continue
		}
		running++
		users[inst.User] = struct{}{}
		reason, idle := hb.cullReason(inst, now)
		if reason == "" {
			continue
		}
		if err := hb.spawner.Stop(ctx, inst.User, inst.Server); err != nil {
			hb.logger.Error("culling a server failed", zap.String("user", inst.User), zap.String("server", inst.Server), zap.Error(err))
			continue
		}
		if rt, ok := hb.routes.Peek(routeKey(inst.User, inst.Server)); ok {
			hb.forget(rt)
		}
		running--
		metrics.culls.WithLabelValues(reason).Inc()
		hb.audit.Info("cull", zap.String("user", inst.User), zap.String("server", inst.Server),
			zap.String("reason", reason), zap.Duration("idle", idle), zap.Duration("age", now.Sub(inst.Created)),
			zap.String("container_id", shortID(inst.ID)))
	}
	metrics.running.Set(float64(running))
	metrics.activeUsers.Set(float64(len(users)))
}

// cullReason says why inst must be stopped now ("idle", "max_age") or "".
func (hb *hub) cullReason(inst spawner.Instance, now time.Time) (string, time.Duration) {
	last := hb.started
	if inst.Created.After(last) {
		last = inst.Created
	}
	if rt, ok := hb.routes.Peek(routeKey(inst.User, inst.Server)); ok {
		if t := time.Unix(0, rt.lastActivity.Load()); t.After(last) {
			last = t
		}
	}
	idle := now.Sub(last)
	if maxAge := metaDuration(inst.Meta, metaMaxAge); maxAge > 0 && !inst.Created.IsZero() && now.Sub(inst.Created) > maxAge {
		return "max_age", idle
	}
	if timeout := metaDuration(inst.Meta, metaIdleTimeout); timeout > 0 && idle > timeout {
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
