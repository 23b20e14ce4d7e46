package hub

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/spawner"
	"github.com/hubgate/hubgate/spawner/contract"
)

// Start is one start of a user's server in flight; concurrent requests
// for the same server join it instead of starting another.
type Start struct {
	done     chan struct{}
	began    time.Time
	route    *Route
	err      error
	finished time.Time
	// ticket is set while the start waits for a slot in the queue.
	ticket atomic.Pointer[queued]

	stepMu sync.Mutex
	steps  []string    // the steps begun so far; the last is under way
	stepAt []time.Time // when each of steps began
}

// Steps waiting in the queue and after the engine's part.
const (
	StepQueued  = "waiting for a free start slot"
	StepRepos   = "syncing the team's repos"
	StepWaiting = "waiting for the app to answer"
	StepEgress  = "preparing the egress proxy"
)

func (st *Start) step(s string) {
	st.stepMu.Lock()
	defer st.stepMu.Unlock()
	if n := len(st.steps); n == 0 || st.steps[n-1] != s {
		st.steps = append(st.steps, s)
		st.stepAt = append(st.stepAt, time.Now())
	}
}

// stepTime is how long one step of a start took.
type stepTime struct {
	name string
	took time.Duration
}

// stepTimes are a start's steps for the audit log: an operator sees where
// a slow start spent its time.
type stepTimes []stepTime

// timeline returns the steps begun so far with their durations, the last
// one's up to end, after "preparing": the time from the start's
// beginning to its first step.
func (st *Start) timeline(end time.Time) stepTimes {
	st.stepMu.Lock()
	defer st.stepMu.Unlock()
	if len(st.steps) == 0 {
		return nil
	}
	t := stepTimes{{"preparing", st.stepAt[0].Sub(st.began)}}
	for i, name := range st.steps {
		next := end
		if i+1 < len(st.stepAt) {
			next = st.stepAt[i+1]
		}
		t = append(t, stepTime{name, next.Sub(st.stepAt[i])})
	}
	return t
}

// MarshalLogArray writes the steps as {"step": name, "ms": duration}.
func (t stepTimes) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, s := range t {
		if err := enc.AppendObject(zapcore.ObjectMarshalerFunc(func(o zapcore.ObjectEncoder) error {
			o.AddString("step", s.name)
			o.AddFloat64("ms", float64(s.took.Microseconds())/1000)
			return nil
		})); err != nil {
			return err
		}
	}
	return nil
}

// Steps are the steps of the start begun so far, in order; the last is
// the one under way (or the one it failed in).
func (st *Start) Steps() []string {
	st.stepMu.Lock()
	defer st.stepMu.Unlock()
	return append([]string(nil), st.steps...)
}

// StartError is why a start failed: in which step, and the last lines of
// the container's output with the container's secrets removed, safe to
// show the user.
type StartError struct {
	Step   string
	Output string
	Err    error
}

func (e *StartError) Error() string { return e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// Done is closed when the start finished, well or not.
func (st *Start) Done() <-chan struct{} { return st.done }

// Result is the route of a finished start, or why it failed.
func (st *Start) Result() (*Route, error) { return st.route, st.err }

// Elapsed is how long the start has been going.
func (st *Start) Elapsed() time.Duration { return time.Since(st.began) }

// Errors a start may end with, besides the spawner's own.
var (
	ErrContainerExited = errors.New("container exited while starting")
	ErrContainerGone   = errors.New("container was removed while starting")
)

// StartRequest is what a start needs to know, decided by the caller.
type StartRequest struct {
	// User and Server name the server.
	User, Server string
	// Image is the policy's image for Server.
	Image *policies.Image
	// Grant is what the policy gives the user.
	Grant policies.Grant
	// Groups are the user's identity-provider groups, stored with the
	// container (MetaGroups) for the egress proxy, which applies the
	// policy in force to them on each request.
	Groups []string
	// Prefix is the URL path prefix the server is served under; the
	// readiness probe asks for it and the container learns it.
	Prefix string
	// IdentityEnv, if set, returns the git identity, repos and GitHub
	// token for the container; it runs once, inside the start.
	IdentityEnv func(ctx context.Context) map[string]string
	// By names who asked (for the audit log).
	By string
}

// Position is the start's place in the queue of starts, 0 once it runs.
func (rt *Runtime) Position(st *Start) int {
	return rt.queue.position(st.ticket.Load())
}

// Begin returns the start in flight for req's server, or begins one. A
// start that failed less than failedStartLinger ago is returned as is (so
// every waiter sees the reason); once the caller has shown the failure it
// calls Dismiss, and the next request begins anew.
func (rt *Runtime) Begin(req StartRequest) *Start {
	key := Key(req.User, req.Server)
	rt.MarkSeen(req.User)
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if st, ok := rt.starts[key]; ok {
		if st.finished.IsZero() || time.Since(st.finished) < failedStartLinger {
			return st
		}
		delete(rt.starts, key)
	}
	st := &Start{done: make(chan struct{}), began: time.Now()}
	rt.starts[key] = st
	timeout := time.Duration(rt.startTimeout.Load())
	go func() {
		var r *Route
		err := rt.queue.acquire(rt.ctx, func(w *queued) { st.ticket.Store(w); st.step(StepQueued) })
		if err == nil {
			st.ticket.Store(nil)
			ctx, cancel := context.WithTimeout(rt.ctx, timeout)
			r, err = rt.spawn(ctx, req, timeout, st)
			cancel()
			rt.queue.release()
		}
		rt.mu.Lock()
		defer rt.mu.Unlock()
		st.route, st.err, st.finished = r, err, time.Now()
		if err == nil {
			rt.dropAddr(r)
			rt.routes.Add(key, r)
			delete(rt.starts, key)
		}
		close(st.done)
	}()
	return st
}

// Dismiss forgets a failed start once its reason was shown.
func (rt *Runtime) Dismiss(st *Start) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for key, cur := range rt.starts {
		if cur == st && !st.finished.IsZero() {
			delete(rt.starts, key)
		}
	}
}

// Pending reports the start in flight for key, if any.
func (rt *Runtime) Pending(key string) (*Start, bool) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	st, ok := rt.starts[key]
	return st, ok && st.finished.IsZero()
}

// inFlight counts the starts not finished yet.
func (rt *Runtime) inFlight() int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	n := 0
	for _, st := range rt.starts {
		if st.finished.IsZero() {
			n++
		}
	}
	return n
}

// Meta keys stored with each container (spawner.Spec.Meta), so that the
// culler and the admin page work from the engine's own record.
const (
	MetaIdleTimeout = "idle_timeout_s"
	MetaMaxAge      = "max_age_s"
	MetaMemory      = "memory"
	MetaCPUs        = "cpus"
	// MetaGroups holds StartRequest.Groups, as a JSON list.
	MetaGroups = "groups"
)

// spawn starts the user's server and waits until the app answers.
func (rt *Runtime) spawn(ctx context.Context, req StartRequest, timeout time.Duration, st *Start) (_ *Route, err error) {
	began := time.Now()
	defer func() {
		result := "ok"
		if err != nil {
			result = "error"
		}
		metrics.spawnDuration.WithLabelValues(result).Observe(time.Since(began).Seconds())
	}()
	prov := rt.provenance(ctx, req)
	spec := rt.spec(ctx, req, timeout)
	spec.Env[contract.Provenance] = provenanceEnv(prov)
	spec.Progress = st.step
	fields := []zap.Field{zap.String("user", req.User), zap.String("server", req.Server), zap.String("image", req.Image.Image)}
	if req.By != "" && req.By != req.User {
		fields = append(fields, zap.String("by", req.By))
	}
	if f := rt.Configured().EgressEnv; f != nil {
		st.step(StepEgress)
		env, err := f(ctx, spec)
		if err != nil {
			rt.audit.Error("spawn failed", append(fields, zap.String("reason", "egress"), zap.Error(err))...)
			return nil, &StartError{Step: StepEgress, Err: fmt.Errorf("egress proxy for %s/%s: %w", req.User, req.Server, err)}
		}
		maps.Copy(spec.Env, env)
	}
	inst, err := rt.spawner.Ensure(ctx, spec)
	if err != nil {
		rt.audit.Error("spawn failed", append(fields, zap.String("reason", "create"), zap.Error(err))...)
		steps := st.Steps()
		step := ""
		if len(steps) > 0 {
			step = steps[len(steps)-1]
		}
		return nil, &StartError{Step: step, Err: fmt.Errorf("start container for %s/%s: %w", req.User, req.Server, err)}
	}
	if inst, err = rt.awaitRunning(ctx, req, inst, st); err != nil {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		rt.audit.Error("spawn failed", append(fields, zap.String("reason", "not_running"), zap.String("status", inst.Status), zap.Error(err))...)
		if errors.Is(err, context.DeadlineExceeded) {
			if serr := rt.spawner.Stop(lctx, req.User, req.Server); serr != nil && !errors.Is(serr, spawner.ErrNotFound) {
				rt.logger.Error("stopping a server that did not start failed", append(fields, zap.Error(serr))...)
			}
		}
		steps := st.Steps()
		return nil, &StartError{Step: steps[len(steps)-1], Err: fmt.Errorf("wait for %s/%s to run: %w", req.User, req.Server, err)}
	}
	r := rt.newRoute(inst)
	if len(req.Grant.Repos) > 0 {
		st.step(StepRepos)
	}
	st.step(StepWaiting)
	if err := rt.waitReady(ctx, r, req.Prefix); err != nil {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		logs, lerr := rt.spawner.Logs(lctx, req.User, req.Server, 50)
		if lerr != nil {
			logs = "(logs unavailable: " + lerr.Error() + ")"
		}
		rt.audit.Error("spawn failed", append(fields, zap.String("reason", "not_ready"), zap.String("container_id", shortID(inst.ID)),
			zap.Error(err), zap.String("container_output", logs))...)
		if errors.Is(err, context.DeadlineExceeded) {
			if serr := rt.spawner.Stop(lctx, req.User, req.Server); serr != nil && !errors.Is(serr, spawner.ErrNotFound) {
				rt.logger.Error("stopping a server that did not start failed", append(fields, zap.Error(serr))...)
			}
		}
		steps := st.Steps()
		return nil, &StartError{Step: steps[len(steps)-1], Output: safeOutput(logs, spec.Env, 12),
			Err: fmt.Errorf("wait for %s/%s: %w", req.User, req.Server, err)}
	}
	rt.audit.Info("spawn", append(fields, zap.String("container_id", shortID(inst.ID)), zap.Duration("duration", time.Since(began)),
		zap.Array("steps", st.timeline(time.Now())))...)
	rt.auditProvenance(ctx, req, inst, prov)
	return r, nil
}

// readyPoll is the pause between two readiness probes of a starting
// server.
const readyPoll = 5 * time.Millisecond

// waitReady polls the app until it answers HTTP on its port with the
// container secret, the container stops running, or ctx ends.
func (rt *Runtime) waitReady(ctx context.Context, r *Route, path string) error {
	url := "http://" + r.inst.Addr + path
	// A refused connection to the container costs well under a
	// millisecond, and every millisecond between the app's readiness and
	// the probe is added to the user's first request: poll as often as
	// the bench's bare start does (backing off to 250 ms added 125 ms on
	// average to a Jupyter start; a 20 ms pause adds 10 ms, 5 ms adds 2.5).
	// A server is probed only inside its start, which holds one of the
	// start queue's max_concurrent_starts places (10 by default): at most
	// 200 probes a second per start, 2,000 a second by default.
	lastCheck := time.Now()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("probe request: %w", err)
		}
		req.Header.Set("Authorization", r.auth)
		resp, err := rt.probe.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Since(lastCheck) > time.Second {
			lastCheck = time.Now()
			inst, gerr := rt.spawner.Get(ctx, r.user, r.server)
			switch {
			case errors.Is(gerr, spawner.ErrNotFound):
				return ErrContainerGone
			case gerr == nil && !inst.Running:
				return fmt.Errorf("%w (status %s)", ErrContainerExited, inst.Status)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("app did not answer on %s: %w", r.inst.Addr, ctx.Err())
		case <-time.After(readyPoll):
		}
	}
}

// StartTimeout is the configured bound of a start.
func (rt *Runtime) StartTimeout() time.Duration { return time.Duration(rt.startTimeout.Load()) }

// StartAndWait begins (or joins) the start of req's server and waits up
// to wait for it. It returns the route when the server is ready; the
// start itself when it is still going (st non-nil, r nil); or the start's
// error, after which the failed start is dismissed so the next request
// tries anew. ctx ending returns ctx's error.
//
// While the shared storage does not answer (see Share), no new start is
// begun: it returns ErrStorageDown; starts in flight go on.
func (rt *Runtime) StartAndWait(ctx context.Context, req StartRequest, wait time.Duration) (r *Route, st *Start, err error) {
	if _, pending := rt.Pending(Key(req.User, req.Server)); !pending && !rt.StorageOK() {
		return nil, nil, ErrStorageDown
	}
	st = rt.Begin(req)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-st.done:
	case <-timer.C:
		return nil, st, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	if st.err != nil {
		rt.Dismiss(st)
		return nil, nil, st.err
	}
	return st.route, nil, nil
}

// awaitRunning waits until the engine reports the server running with an
// address. Docker's Ensure returns a running container; a cluster's pod
// may first wait to be scheduled or for its image, and its status (such
// as "pending: Unschedulable: 0/3 nodes are available: insufficient
// memory") becomes the step the progress page shows. The informer-backed
// Get makes no API call.
func (rt *Runtime) awaitRunning(ctx context.Context, req StartRequest, inst spawner.Instance, st *Start) (spawner.Instance, error) {
	for !inst.Running || inst.Addr == "" {
		if inst.Status != "" {
			st.step("waiting for the engine: " + inst.Status)
		}
		select {
		case <-ctx.Done():
			return inst, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		next, err := rt.spawner.Get(ctx, req.User, req.Server)
		switch {
		case errors.Is(err, spawner.ErrNotFound):
			return inst, ErrContainerGone
		case err != nil:
			continue
		}
		inst = next
	}
	return inst, nil
}
