package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
)

// coldStart measures, BENCH_COLD times each, (1) a new user's first
// request through hubgate until the app's first byte, and (2) a bare
// create + start + first answer of the same image, with the same
// environment, volume mount and network (the volume is made before the
// clock starts): each pair at the same time (BENCH_COLD_PAIRED=1, the
// two taking turns to go first), or alternating. Run 0 of each is an
// untimed warm-up. Every container is removed right after its
// measurement.
func (b *bench) coldStart(ctx context.Context) error {
	n := b.cfg.cold
	b.res.loadCold = loadAvg()
	log.Printf("cold start: %d of each, %s (load average %.2f)", n, b.coldOrder(), b.res.loadCold)
	sessions := make([]*userSession, n+1)
	for i := range sessions {
		s, err := b.login(ctx, coldUser(i))
		if err != nil {
			return err
		}
		sessions[i] = s
	}
	// hubHost is the least privilege and limits of hubgate's own
	// container, read from the warm-up start: the timed bare starts get
	// the same, so that the difference is hubgate's work, not the
	// container's.
	var hubHost *container.HostConfig
	hubgate := func(i int) (time.Duration, error) {
		out, err := b.untilServedAt(ctx, sessions[i], b.coldPath(coldUser(i)), 2*time.Minute)
		if err != nil {
			return 0, err
		}
		if i == 0 {
			a, err := findUserContainer(ctx, b.dk, b.name, coldUser(i))
			if err != nil {
				return 0, fmt.Errorf("hubgate's warm-up container: %w", err)
			}
			hubHost = a.Host
		} else {
			b.res.coldHubRetries += out.retries
			b.res.coldHubErrors += out.errors
		}
		return out.ttfb, nil
	}
	for i := 0; i <= n; i++ {
		// Read here, between pairs: pair 0's hubgate side sets it.
		host := hubHost
		var hub time.Duration
		var bare bareTimes
		if b.cfg.coldPaired {
			// Both at the same time: the notebook's own start (seconds of
			// Python on a host whose speed drifts) is then as fast or as
			// slow for both, and the difference is what hubgate adds.
			// Each container is removed when both have answered, so
			// that neither's removal runs beside the other's start.
			//
			// The one that reaches the engine second waits behind the
			// other's create and start (the daemon serialises parts of
			// them), so the two take turns: in odd pairs hubgate's
			// request goes BENCH_COLD_LEAD ahead of the bare create, in
			// even pairs the bare create goes that far ahead. Neither
			// clock runs while its side waits.
			var herr, berr error
			var removeBare func()
			var wg sync.WaitGroup
			hubLeads := coldHubLeads(i)
			wg.Go(func() {
				if !hubLeads {
					time.Sleep(b.cfg.coldLead)
				}
				hub, herr = hubgate(i)
			})
			wg.Go(func() {
				if hubLeads {
					time.Sleep(b.cfg.coldLead)
				}
				bare, removeBare, berr = b.bareStart(ctx, i, host)
			})
			wg.Wait()
			b.removeUser(ctx, coldUser(i))
			if removeBare != nil {
				removeBare()
			}
			if err := errors.Join(herr, berr); err != nil {
				return err
			}
		} else {
			hubFirst := i%2 == 0
			for k := range 2 {
				var err error
				if (k == 0) == hubFirst {
					hub, err = hubgate(i)
					b.removeUser(ctx, coldUser(i))
				} else {
					var remove func()
					bare, remove, err = b.bareStart(ctx, i, host)
					if remove != nil {
						remove()
					}
				}
				if err != nil {
					return err
				}
			}
		}
		if i == 0 {
			continue
		}
		b.res.coldHub = append(b.res.coldHub, hub)
		b.res.coldBare = append(b.res.coldBare, bare)
		log.Printf("cold %d hubgate: %s; bare %s (create %s, start %s, first answer %s)", i, hub.Round(time.Millisecond), bare.total.Round(time.Millisecond),
			bare.create.Round(time.Millisecond), bare.start.Round(time.Millisecond), bare.answer.Round(time.Millisecond))
	}
	b.res.coldSpawn, b.res.coldSteps = b.spawnDurations("cold")
	return nil
}

// coldHubLeads says whether hubgate goes first in pair i of a paired
// cold start: in odd pairs it does, in even ones bare Docker.
func coldHubLeads(i int) bool { return i%2 == 1 }

// coldOrder says how the cold starts of hubgate and bare Docker are
// ordered.
func (b *bench) coldOrder() string {
	if b.cfg.coldPaired {
		return fmt.Sprintf("each pair at the same time, taking turns to go %s ahead", b.cfg.coldLead)
	}
	return "alternating"
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
// does (same image, env shape, labels shape, volume mount, network, and
// the capabilities, security options and limits of host, hubgate's own
// container, when known), and polls it every 5ms until it answers HTTP
// with its token. remove (nil when nothing was created) removes the
// container; the caller calls it, also on error.
func (b *bench) bareStart(ctx context.Context, i int, host *container.HostConfig) (t bareTimes, remove func(), err error) {
	user := fmt.Sprintf("bare%02d", i)
	cname := fmt.Sprintf("%s-bare-%02d", b.name, i)
	server, image, home, port := b.coldServer()
	prefix := "/user/" + user + "/" + server + "/"
	token := randomHex(32)
	vol, err := b.dk.VolumeCreate(ctx, volume.CreateOptions{Name: cname, Labels: map[string]string{labelBench: b.name}})
	if err != nil {
		return t, nil, fmt.Errorf("create volume %s: %w", cname, err)
	}
	env := []string{
		"GIT_AUTHOR_NAME=" + user, "GIT_COMMITTER_NAME=" + user, "HOME=" + home,
		"HUBGATE_BASE_URL=" + prefix, "HUBGATE_DEFAULT_URL=/", "HUBGATE_SERVER=" + server,
		"HUBGATE_TOKEN=" + token, "HUBGATE_USER=" + user, "JUPYTERHUB_SERVICE_PREFIX=" + prefix,
	}
	cfg := &container.Config{
		Hostname: user,
		Image:    image,
		Env:      env,
		Labels:   map[string]string{labelBench: b.name, "hubgate.bench.user": user, "hubgate.port": port},
	}
	hostCfg := &container.HostConfig{
		NetworkMode:   container.NetworkMode(b.name),
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		Mounts:        []mount.Mount{{Type: mount.TypeVolume, Source: vol.Name, Target: home}},
	}
	if host != nil {
		hostCfg.CapAdd, hostCfg.CapDrop, hostCfg.SecurityOpt = host.CapAdd, host.CapDrop, host.SecurityOpt
		hostCfg.ReadonlyRootfs, hostCfg.Tmpfs = host.ReadonlyRootfs, host.Tmpfs
		hostCfg.Memory, hostCfg.NanoCPUs, hostCfg.PidsLimit = host.Memory, host.NanoCPUs, host.PidsLimit
	}
	netCfg := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{b.name: {}}}
	probe := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}

	t0 := time.Now()
	resp, err := b.dk.ContainerCreate(ctx, cfg, hostCfg, netCfg, nil, cname)
	if err != nil {
		return t, nil, fmt.Errorf("create %s: %w", cname, err)
	}
	remove = func() {
		if err := b.dk.ContainerRemove(context.WithoutCancel(ctx), resp.ID, container.RemoveOptions{Force: true}); err != nil {
			log.Printf("remove %s: %v", cname, err)
		}
	}
	t1 := time.Now()
	if err := b.dk.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		return t, remove, fmt.Errorf("start %s: %w", cname, err)
	}
	c, err := b.dk.ContainerInspect(ctx, resp.ID)
	if err != nil {
		return t, remove, fmt.Errorf("inspect %s: %w", cname, err)
	}
	t2 := time.Now()
	ep := c.NetworkSettings.Networks[b.name]
	if ep == nil || ep.IPAddress == "" {
		return t, remove, fmt.Errorf("%s has no address on %s", cname, b.name)
	}
	url := "http://" + ep.IPAddress + ":" + port + prefix + b.coldRest()
	deadline := t0.Add(2 * time.Minute)
	for {
		t.polls++
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Authorization", "token "+token)
		var first time.Time
		r, err := probe.Do(req)
		if err == nil {
			first = time.Now()
			r.Body.Close()
			// The same answer hubgate's user waits for: a 200.
			if r.StatusCode == http.StatusOK {
				t.create, t.start, t.answer, t.total = t1.Sub(t0), t2.Sub(t1), first.Sub(t2), first.Sub(t0)
				return t, remove, nil
			}
			err = fmt.Errorf("status %d", r.StatusCode)
		}
		if time.Now().After(deadline) {
			return t, remove, fmt.Errorf("%s did not answer 200 within 2 minutes: %w", cname, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// coldServer is the server the cold start measures: the policy's "cold"
// image (BENCH_COLD_IMAGE, the Debian Jupyter image by default) when it is
// on the engine, else the test app.
func (b *bench) coldServer() (server, image, home, port string) {
	if b.coldImageOK {
		return "cold", b.cfg.coldImage, envString("BENCH_COLD_HOME", "/home/jovyan"), b.cfg.coldPort
	}
	return "notebook", "hubgate/testapp:latest", "/home/hubgate", "8888"
}

// coldRest is the path below the server's prefix that the cold start asks
// for: Jupyter's api/status (it needs the token), or the test app's whoami.
func (b *bench) coldRest() string {
	if b.coldImageOK {
		return envString("BENCH_COLD_PATH", "api/status")
	}
	return "whoami"
}

func (b *bench) coldPath(user string) string {
	server, _, _, _ := b.coldServer()
	return "/user/" + user + "/" + server + "/" + b.coldRest()
}

// spawnDurations reads hubgate's audit log for the "spawn" records of the
// users whose names start with prefix: hubgate's own create-to-ready
// time, and how long each step of it took (the record's "steps").
func (b *bench) spawnDurations(prefix string) ([]time.Duration, map[string][]time.Duration) {
	var out []time.Duration
	steps := map[string][]time.Duration{}
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
				Steps    []struct {
					Step string  `json:"step"`
					MS   float64 `json:"ms"`
				} `json:"steps"`
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
			for _, st := range rec.Steps {
				steps[st.Step] = append(steps[st.Step], time.Duration(st.MS*float64(time.Millisecond)))
			}
		}
		f.Close()
	}
	return out, steps
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
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	_ = parallel(rmCtx, 8, idx, func(i int) error {
		b.removeUser(rmCtx, crowdUser(i))
		return nil
	})
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
