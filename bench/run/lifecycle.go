package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
)

// coldStart measures, BENCH_COLD times each and alternating, (1) a new
// user's first request through hubgate until the app's first byte, and
// (2) a bare create + start + first answer of the same image, with the
// same environment, volume mount and network (the volume is made before
// the clock starts). Run 0 of each is an untimed warm-up. Every container
// is removed right after its measurement.
func (b *bench) coldStart(ctx context.Context) error {
	n := b.cfg.cold
	b.res.loadCold = loadAvg()
	log.Printf("cold start: %d of each, alternating (load average %.2f)", n, b.res.loadCold)
	sessions := make([]*userSession, n+1)
	for i := range sessions {
		s, err := b.login(ctx, coldUser(i))
		if err != nil {
			return err
		}
		sessions[i] = s
	}
	for i := 0; i <= n; i++ {
		hubFirst := i%2 == 0
		for k := range 2 {
			if (k == 0) == hubFirst {
				out, err := b.untilServed(ctx, sessions[i], 60*time.Second)
				if err != nil {
					return err
				}
				b.removeUser(ctx, coldUser(i))
				if i > 0 {
					b.res.coldHub = append(b.res.coldHub, out.ttfb)
					b.res.coldHubRetries += out.retries
					b.res.coldHubErrors += out.errors
					log.Printf("cold %d hubgate: %s", i, out.ttfb.Round(time.Millisecond))
				}
			} else {
				d, err := b.bareStart(ctx, i)
				if err != nil {
					return err
				}
				if i > 0 {
					b.res.coldBare = append(b.res.coldBare, d)
					log.Printf("cold %d bare:    %s (create %s, start %s, first answer %s)", i, d.total.Round(time.Millisecond),
						d.create.Round(time.Millisecond), d.start.Round(time.Millisecond), d.answer.Round(time.Millisecond))
				}
			}
		}
	}
	b.res.coldSpawn = b.spawnDurations("cold")
	return nil
}

// removeUser removes the containers hubgate started for user.
func (b *bench) removeUser(ctx context.Context, user string) {
	cs, err := b.dk.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", labelDeployment+"="+b.name), filters.Arg("label", labelUser+"="+user))})
	if err != nil {
		log.Printf("list %s: %v", user, err)
		return
	}
	for _, c := range cs {
		if err := b.dk.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil {
			log.Printf("remove %s: %v", c.ID[:12], err)
		}
	}
}

// bareTimes are the phases of a bare start.
type bareTimes struct {
	create, start, answer, total time.Duration
	polls                        int
}

// bareStart creates and starts a test app container the way hubgate
// does (same image, env shape, labels shape, volume mount, network,
// no limits as in the bench policy), and polls it every 5ms until it
// answers HTTP with its token.
func (b *bench) bareStart(ctx context.Context, i int) (bareTimes, error) {
	var t bareTimes
	user := fmt.Sprintf("bare%02d", i)
	cname := fmt.Sprintf("%s-bare-%02d", b.name, i)
	prefix := appPath(user, "")
	token := randomHex(32)
	vol, err := b.dk.VolumeCreate(ctx, volume.CreateOptions{Name: cname, Labels: map[string]string{labelBench: b.name}})
	if err != nil {
		return t, fmt.Errorf("create volume %s: %w", cname, err)
	}
	env := []string{
		"GIT_AUTHOR_NAME=" + user, "GIT_COMMITTER_NAME=" + user, "HOME=/home/hubgate",
		"HUBGATE_BASE_URL=" + prefix, "HUBGATE_DEFAULT_URL=/", "HUBGATE_SERVER=notebook",
		"HUBGATE_TOKEN=" + token, "HUBGATE_USER=" + user, "JUPYTERHUB_SERVICE_PREFIX=" + prefix,
	}
	cfg := &container.Config{
		Hostname: user,
		Image:    "hubgate/testapp:latest",
		Env:      env,
		Labels:   map[string]string{labelBench: b.name, "hubgate.bench.user": user, "hubgate.port": "8888"},
	}
	hostCfg := &container.HostConfig{
		NetworkMode:   container.NetworkMode(b.name),
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		Mounts:        []mount.Mount{{Type: mount.TypeVolume, Source: vol.Name, Target: "/home/hubgate"}},
	}
	netCfg := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{b.name: {}}}
	probe := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}

	t0 := time.Now()
	resp, err := b.dk.ContainerCreate(ctx, cfg, hostCfg, netCfg, nil, cname)
	if err != nil {
		return t, fmt.Errorf("create %s: %w", cname, err)
	}
	defer func() {
		if err := b.dk.ContainerRemove(context.WithoutCancel(ctx), resp.ID, container.RemoveOptions{Force: true}); err != nil {
			log.Printf("remove %s: %v", cname, err)
		}
	}()
	t1 := time.Now()
	if err := b.dk.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		return t, fmt.Errorf("start %s: %w", cname, err)
	}
	c, err := b.dk.ContainerInspect(ctx, resp.ID)
	if err != nil {
		return t, fmt.Errorf("inspect %s: %w", cname, err)
	}
	t2 := time.Now()
	ep := c.NetworkSettings.Networks[b.name]
	if ep == nil || ep.IPAddress == "" {
		return t, fmt.Errorf("%s has no address on %s", cname, b.name)
	}
	url := "http://" + ep.IPAddress + ":8888" + prefix
	deadline := t0.Add(30 * time.Second)
	for {
		t.polls++
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Authorization", "token "+token)
		var first time.Time
		r, err := probe.Do(req)
		if err == nil {
			first = time.Now()
			r.Body.Close()
			t.create, t.start, t.answer, t.total = t1.Sub(t0), t2.Sub(t1), first.Sub(t2), first.Sub(t0)
			return t, nil
		}
		if time.Now().After(deadline) {
			return t, fmt.Errorf("%s did not answer within 30s: %w", cname, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// spawnDurations reads hubgate's audit log for the "spawn" records of the
// users whose names start with prefix: hubgate's own create-to-ready time.
func (b *bench) spawnDurations(prefix string) []time.Duration {
	var out []time.Duration
	for gen := 1; gen <= b.hubN; gen++ {
		f, err := os.Open(fmt.Sprintf("%s/hubgate-%d.log", b.work, gen))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			if !strings.Contains(string(line), `"msg":"spawn"`) {
				continue
			}
			var rec struct {
				User     string `json:"user"`
				Duration any    `json:"duration"`
			}
			if json.Unmarshal(line, &rec) != nil || !strings.HasPrefix(rec.User, prefix) || rec.User == coldUser(0) {
				continue
			}
			switch d := rec.Duration.(type) {
			case float64:
				out = append(out, time.Duration(d*float64(time.Second)))
			case string:
				if v, err := time.ParseDuration(d); err == nil {
					out = append(out, v)
				}
			}
		}
		f.Close()
	}
	return out
}

// crowdResult is the outcome of many first requests at once.
type crowdResult struct {
	users, served, errors, retries int
	failures                       []string
	p50, max                       time.Duration
	containers                     int
}

// crowdStart logs BENCH_CROWD new users in, then sends all their first
// requests at the same moment, each from its own connection, and waits
// until every one is served (or two minutes pass).
func (b *bench) crowdStart(ctx context.Context) error {
	n := b.cfg.crowd
	b.res.loadCrowd = loadAvg()
	log.Printf("crowd: %d new users' first requests at once (load average %.2f)", n, b.res.loadCrowd)
	sessions := make([]*userSession, n)
	for i := range sessions {
		s, err := b.login(ctx, crowdUser(i))
		if err != nil {
			return err
		}
		sessions[i] = s
	}
	res := &crowdResult{users: n}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var times []time.Duration
	gate := make(chan struct{})
	for _, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			out, err := b.untilServed(ctx, s, 2*time.Minute)
			mu.Lock()
			defer mu.Unlock()
			res.retries += out.retries
			res.errors += out.errors
			if err != nil {
				res.failures = append(res.failures, err.Error())
				return
			}
			if out.errors > 0 {
				res.failures = append(res.failures, fmt.Sprintf("%s: %d errors before being served (last: %s)", s.user, out.errors, out.lastErr))
			}
			res.served++
			times = append(times, out.ttfb)
		}()
	}
	close(gate)
	wg.Wait()
	res.p50, res.max = medianDur(times), percentileDur(times, 100)
	cs, err := b.dk.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", labelDeployment+"="+b.name))})
	if err == nil {
		for _, c := range cs {
			if strings.HasPrefix(c.Labels[labelUser], "crowd") {
				res.containers++
			}
		}
	}
	b.res.crowd = res
	log.Printf("crowd: %d/%d served, %d errors, %d 'starting' answers; p50 %s, last %s; %d containers running",
		res.served, n, res.errors, res.retries, res.p50.Round(time.Millisecond), res.max.Round(time.Millisecond), res.containers)
	for _, f := range res.failures {
		log.Printf("crowd: %s", f)
	}
	// Back to one running container for what follows.
	rmCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for i := range n {
		b.removeUser(rmCtx, crowdUser(i))
	}
	return nil
}

// scaleResult is the 200-container figures.
type scaleResult struct {
	n           int
	startAll    time.Duration
	running     int
	rps1, rpsN  []float64
	p99s1, p99N []float64
	// direct1 and directN are the control without a gateway (loadGen).
	direct1, directN []float64
	// hubCPU1 and hubCPUN are hubgate's CPU µs per request.
	hubCPU1, hubCPUN []float64
	restartAll       time.Duration
	healthReady      time.Duration
	restartErrs      int
	spawnsAfter      int
}

// scaleRun starts BENCH_SCALE_N users' servers through hubgate, compares
// wrk spread over all of them with wrk on one (the same Lua script for
// both), then restarts hubgate and measures from the process start until
// every one of them answers through it.
func (b *bench) scaleRun(ctx context.Context) error {
	n := b.cfg.scaleN
	res := &scaleResult{n: n}
	b.res.scale = res
	b.res.loadScale = loadAvg()
	log.Printf("scale: %d users' servers (load average %.2f)", n, b.res.loadScale)
	sessions := make([]*userSession, n)
	for i := range sessions {
		s, err := b.login(ctx, scaleUser(i))
		if err != nil {
			return err
		}
		sessions[i] = s
	}
	t0 := time.Now()
	if err := parallel(ctx, 20, sessions, func(s *userSession) error {
		_, err := b.untilServed(ctx, s, 10*time.Minute)
		return err
	}); err != nil {
		return err
	}
	res.startAll = time.Since(t0)
	cs, err := b.dk.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", labelDeployment+"="+b.name))})
	if err != nil {
		return err
	}
	res.running = len(cs)
	log.Printf("scale: %d servers started in %s; %d containers running", n, res.startAll.Round(time.Second), res.running)

	one := b.work + "/targets-1.txt"
	all := b.work + "/targets-n.txt"
	if err := os.WriteFile(one, []byte(appPath("bench", "whoami")+"\t"+b.main.cookie+"\n"), 0o644); err != nil {
		return err
	}
	var lines strings.Builder
	for _, s := range sessions {
		lines.WriteString(appPath(s.user, "whoami") + "\t" + s.cookie + "\n")
	}
	if err := os.WriteFile(all, []byte(lines.String()), 0o644); err != nil {
		return err
	}
	// The control: the same spread without any gateway, straight to the
	// containers, to tell hubgate's share of a drop from the app side's
	// (two hundred processes instead of one on the same cores).
	apps := make([]appContainer, 0, n)
	for _, s := range sessions {
		a, err := findUserContainer(ctx, b.dk, b.name, s.user)
		if err != nil {
			return err
		}
		apps = append(apps, a)
	}
	rounds := max(b.cfg.rounds/2, 2)
	for round := range rounds {
		for k := range 2 {
			file, rps, p99 := one, &res.rps1, &res.p99s1
			if (k+round)%2 == 1 {
				file, rps, p99 = all, &res.rpsN, &res.p99N
			}
			r, args, err := b.wrk(ctx, b.hub.url(""), nil, b.cfg.duration, "rotate.lua", file)
			if err != nil {
				return err
			}
			if r.errors() > 0 {
				return fmt.Errorf("wrk over %s: %d errors", file, r.errors())
			}
			*rps = append(*rps, r.RPS)
			*p99 = append(*p99, r.P99)
			if file == one {
				res.hubCPU1 = append(res.hubCPU1, r.perRequest(r.HubCPU))
			} else {
				res.hubCPUN = append(res.hubCPUN, r.perRequest(r.HubCPU))
			}
			if round == 0 && k == 0 {
				b.res.commands = append(b.res.commands, "wrk "+shownArgs(args, target{})+"   # file: one 'path<TAB>cookie' line per user")
			}
			log.Printf("scale round %d %s: %.0f req/s, p99 %.2fms, hubgate CPU %.0fµs per request", round+1, file[strings.LastIndex(file, "/")+1:], r.RPS, r.P99/1000, r.perRequest(r.HubCPU))
		}
		for k := range 2 {
			targets, rps := []appContainer{b.app}, &res.direct1
			if (k+round)%2 == 1 {
				targets, rps = apps, &res.directN
			}
			v, errs := loadGen(ctx, targets, b.cfg.conns, b.cfg.duration)
			if errs > 0 {
				return fmt.Errorf("direct load over %d containers: %d errors", len(targets), errs)
			}
			*rps = append(*rps, v)
			log.Printf("scale round %d direct to %d container(s): %.0f req/s", round+1, len(targets), v)
		}
	}

	// Restart: from the new process's start to every server answering.
	b.hub.stop()
	if err := b.startHubProcNoWait(); err != nil {
		return err
	}
	start := b.hub.started
	var mu sync.Mutex
	var last time.Duration
	healthDone := make(chan struct{})
	go func() {
		defer close(healthDone)
		if err := b.hub.waitReady(ctx, "/hub/health", time.Minute); err == nil {
			mu.Lock()
			res.healthReady = time.Since(start)
			mu.Unlock()
		}
	}()
	fresh := make([]*userSession, n)
	for i, s := range sessions {
		fresh[i] = &userSession{user: s.user, cookie: s.cookie, client: insecureClient(nil)}
	}
	err = parallel(ctx, 32, fresh, func(s *userSession) error {
		hdr := http.Header{"Accept": {"application/json"}, "Cookie": {s.cookie}}
		for {
			st, _, _, err := fetch(ctx, s.client, http.MethodGet, b.hub.url(appPath(s.user, "whoami")), hdr, nil)
			if err == nil && st == http.StatusOK {
				mu.Lock()
				last = max(last, time.Since(start))
				mu.Unlock()
				return nil
			}
			if err == nil {
				mu.Lock()
				res.restartErrs++
				mu.Unlock()
			}
			if time.Since(start) > 2*time.Minute {
				return fmt.Errorf("%s not served 2 minutes after the restart (status %d, %v)", s.user, st, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	if err != nil {
		return err
	}
	<-healthDone
	mu.Lock()
	res.restartAll = last
	mu.Unlock()
	res.spawnsAfter = b.countLog(`"msg":"spawn"`)
	log.Printf("scale: restart to all %d served: %s (health answered after %s; %d non-200 answers on the way; %d spawns logged after restart)",
		n, res.restartAll.Round(time.Millisecond), res.healthReady.Round(time.Millisecond), res.restartErrs, res.spawnsAfter)
	return nil
}

// startHubProcNoWait restarts hubgate with a new log and returns at once.
func (b *bench) startHubProcNoWait() error {
	b.hubN++
	b.hub.logPath = fmt.Sprintf("%s/hubgate-%d.log", b.work, b.hubN)
	return b.hub.start()
}

// countLog counts lines of the current hubgate log containing s.
func (b *bench) countLog(s string) int {
	return strings.Count(tail(b.hub.logPath, 1<<30), s)
}

// parallel runs fn on every item with at most n at once and returns the
// errors joined.
func parallel[T any](ctx context.Context, n int, items []T, fn func(T) error) error {
	sem := make(chan struct{}, n)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(it); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(append(errs, ctx.Err())...)
}

// loadGen is a closed-loop HTTP load generator straight to the app
// containers, for the scale control: conns workers share one keep-alive
// pool (as a proxy's upstream side does) and send GET whoami to the
// targets in turn for d. It returns requests per second and errors.
func loadGen(ctx context.Context, targets []appContainer, conns int, d time.Duration) (float64, int) {
	type req struct{ url, auth string }
	reqs := make([]req, len(targets))
	for i, a := range targets {
		reqs[i] = req{"http://" + a.addr() + appPathFor(a), "token " + a.Token}
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 128, Proxy: nil}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var next, done, errs atomic.Int64
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	t0 := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				r := reqs[int(next.Add(1))%len(reqs)]
				hr, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
				hr.Header.Set("Authorization", r.auth)
				resp, err := client.Do(hr)
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs.Add(1)
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(t0).Seconds(), int(errs.Load())
}
