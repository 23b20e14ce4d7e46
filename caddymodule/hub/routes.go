package hub

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/hubgate/hubgate/spawner"
)

// Route is a running user server the gateway can proxy to.
type Route struct {
	key    string
	user   string
	server string
	inst   spawner.Instance
	auth   string // the Authorization header value sent upstream
	// authHdr and userHdr are the header values sent upstream, made
	// once: Caddy's proxy clones the request's header before it changes
	// anything, so the slices are never written.
	authHdr, userHdr []string
	// lastActivity is Unix nanoseconds of the last proxied request or
	// websocket data frame.
	lastActivity atomic.Int64
	// sharedActivity is the latest activity other replicas recorded
	// (Unix nanoseconds), read each cull interval.
	sharedActivity atomic.Int64
}

// User is the route's user.
func (r *Route) User() string { return r.user }

// Server is the route's server key.
func (r *Route) Server() string { return r.server }

// Instance is the engine's record of the server.
func (r *Route) Instance() spawner.Instance { return r.inst }

// LastActivity is when the route last carried traffic.
func (r *Route) LastActivity() time.Time {
	return time.Unix(0, max(r.lastActivity.Load(), r.sharedActivity.Load())).UTC()
}

// touch records activity now.
func (r *Route) touch() { r.lastActivity.Store(time.Now().UnixNano()) }

// Key identifies a user's server in the runtime.
func Key(user, server string) string { return user + "\x00" + server }

// ContainerToken is the secret of the container with the given nonce.
func ContainerToken(tokens TokenDeriver, nonce string) string {
	return fmt.Sprintf("%x", tokens.MAC("hubgate container token v1", nonce))
}

func (rt *Runtime) newRoute(inst spawner.Instance) *Route {
	r := &Route{
		key:    Key(inst.User, inst.Server),
		user:   inst.User,
		server: inst.Server,
		inst:   inst,
		auth:   "token " + ContainerToken(rt.tokens, inst.Nonce),
	}
	r.authHdr, r.userHdr = []string{r.auth}, []string{inst.User}
	r.touch()
	return r
}

// Lookup returns the cached route of a running server.
func (rt *Runtime) Lookup(key string) (*Route, bool) {
	return rt.routes.Get(key)
}

// Peek returns the cached route without counting it as recently used.
func (rt *Runtime) Peek(key string) (*Route, bool) {
	return rt.routes.Peek(key)
}

// Forget drops a route, for example after the proxy found it dead.
func (rt *Runtime) Forget(r *Route) {
	if cur, ok := rt.routes.Peek(r.key); ok && cur == r {
		rt.routes.Remove(r.key)
	}
}

// dropAddr forgets every other route to r's address: the engine gave that
// address to r's new container, so a route still naming it belongs to a
// container that is gone (an exit event was missed) and would send its
// user's requests, identity and all, to someone else's app.
func (rt *Runtime) dropAddr(r *Route) {
	for _, key := range rt.routes.Keys() {
		if other, ok := rt.routes.Peek(key); ok && other != r && other.inst.Addr == r.inst.Addr {
			rt.Forget(other)
			rt.logger.Warn("route dropped: its address now belongs to another server",
				zap.String("user", other.user), zap.String("server", other.server), zap.String("addr", other.inst.Addr))
		}
	}
}

// warm lists the deployment's running servers once, so a restarted
// gateway routes to every server that survived it without a start.
func (rt *Runtime) warm() {
	defer close(rt.warmed)
	ctx, cancel := context.WithTimeout(rt.ctx, 30*time.Second)
	defer cancel()
	insts, err := rt.spawner.List(ctx)
	if err != nil {
		rt.logger.Warn("listing running servers failed; they will be found on first request", zap.Error(err))
		return
	}
	rt.logger.Info("reattached to running servers", zap.Int("servers", rt.syncRoutes(insts)))
}

// AwaitWarm waits (at most limit) for the first listing of running
// servers after a gateway start. It reports whether it had to wait, that
// is whether a cache miss may have been that listing's lateness.
func (rt *Runtime) AwaitWarm(ctx context.Context, limit time.Duration) bool {
	select {
	case <-rt.warmed:
		return false
	default:
	}
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-rt.warmed:
	case <-t.C:
	case <-ctx.Done():
	}
	return true
}

// Warmed reports whether the first listing is done.
func (rt *Runtime) Warmed() bool {
	select {
	case <-rt.warmed:
		return true
	default:
		return false
	}
}

// syncRoutes makes the route cache agree with a listing of the engine:
// running servers it lacks are added, cached routes whose container is no
// longer the running one are dropped. It reports the running servers.
func (rt *Runtime) syncRoutes(insts []spawner.Instance) int {
	running := make(map[string]spawner.Instance, len(insts))
	for _, inst := range insts {
		if inst.Running && inst.Addr != "" {
			running[Key(inst.User, inst.Server)] = inst
		}
	}
	for _, key := range rt.routes.Keys() {
		if r, ok := rt.routes.Peek(key); ok && running[key].ID != r.inst.ID {
			rt.Forget(r)
		}
	}
	for key, inst := range running {
		if _, ok := rt.routes.Peek(key); !ok {
			r := rt.newRoute(inst)
			// No activity seen here yet: the culler counts from the later
			// of this gateway's start and the container's creation.
			r.lastActivity.Store(inst.Created.UnixNano())
			rt.routes.ContainsOrAdd(key, r)
		}
	}
	return len(running)
}

// watchExits drops the route of every server whose container stops, as the
// engine reports it. When the event stream breaks (say, the engine
// restarts) it reconnects with backoff and then reconciles the cache with
// a listing.
func (rt *Runtime) watchExits() {
	w, ok := rt.spawner.(spawner.ExitWatcher)
	if !ok {
		return
	}
	backoff := time.Second
	for {
		connected := time.Now()
		err := w.WatchExits(rt.ctx, func(user, server, id string) {
			if r, ok := rt.routes.Peek(Key(user, server)); ok && r.inst.ID == id {
				rt.Forget(r)
				rt.logger.Info("server stopped; route dropped", zap.String("user", user), zap.String("server", server))
			}
		})
		if rt.ctx.Err() != nil {
			return
		}
		if time.Since(connected) > time.Minute {
			backoff = time.Second
		}
		rt.logger.Warn("container event stream ended; reconnecting", zap.Error(err), zap.Duration("after", backoff))
		select {
		case <-rt.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
		// Exits may have been missed meanwhile.
		ctx, cancel := context.WithTimeout(rt.ctx, 30*time.Second)
		if insts, err := rt.spawner.List(ctx); err == nil {
			rt.syncRoutes(insts)
		}
		cancel()
	}
}

// List asks the engine for every server of this deployment (one call;
// not the proxy's hot path) and joins each running one with its route's
// last activity.
func (rt *Runtime) List(ctx context.Context) ([]Listed, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	insts, err := rt.spawner.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Listed, 0, len(insts))
	for _, inst := range insts {
		l := Listed{Instance: inst}
		if r, ok := rt.routes.Peek(Key(inst.User, inst.Server)); ok && r.inst.ID == inst.ID {
			l.LastActivity = r.LastActivity()
		}
		out = append(out, l)
	}
	return out, nil
}

// Listed is one server of a listing.
type Listed struct {
	spawner.Instance
	// LastActivity is zero when this gateway has no route to it.
	LastActivity time.Time
}

// Stop stops and removes a server's container (the volume stays) and
// drops its route. A stop, once asked for, finishes even if the caller
// goes away.
func (rt *Runtime) Stop(ctx context.Context, user, server, by string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err := rt.spawner.Stop(ctx, user, server)
	if r, ok := rt.routes.Peek(Key(user, server)); ok {
		rt.Forget(r)
	}
	if err != nil {
		return fmt.Errorf("stop %s/%s: %w", user, server, err)
	}
	rt.audit.Info("stop", zap.String("user", user), zap.String("server", server), zap.String("by", by))
	return nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
