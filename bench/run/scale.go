package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

// scaleResult is the figures of many running servers (BENCH_SCALE=1).
type scaleResult struct {
	asked, n int
	// sized says why n is below asked (memory or time), if it is.
	sized string
	// perContainerMB is the resident memory of one running test app and
	// its containerd shim, measured on the first batch (the engine's own
	// bookkeeping comes on top).
	perContainerMB float64
	// perServerAvailMB is how much MemAvailable fell per server over the
	// first batch: the app, its shim, the engine's and the kernel's
	// share. It sizes the run.
	perServerAvailMB float64
	firstBatch       int
	firstBatchTime   time.Duration
	startAll         time.Duration
	running          int
	// sizes are the numbers of servers the wrk runs spread over: 1 (the
	// bench user's), some in between, and all n (spreadSizes).
	sizes []int
	// hub and caddy are the wrk runs through hubgate and through plain
	// Caddy, one per size: [0] to one user's server, the last spread over
	// all of them. This Caddy takes its upstream and the container secret
	// from request headers: the same per-request dial placeholder as
	// hubgate's proxy, so its runs show what spreading costs any proxy
	// on this machine (1,000 app processes waking in turn on the server
	// CPU) beside what it costs hubgate.
	hub, caddy []spreadRuns
	// hubPaced and caddyPaced are wrk runs to one server (the bench
	// user's) at about the rate the spread over all n reached through
	// the same proxy: each connection waits paceFor(that rate) ms after
	// each response. Beside the spread, they tell what the lower rate
	// costs (the proxy idles and wakes for every request) from what the
	// number of servers does.
	hubPaced, caddyPaced spreadRuns
	// caddyErr says why plain Caddy's spread was not measured.
	caddyErr string
	// heap and RSS of hubgate (after a GC): right after its restart with
	// no routes known yet, then with all n routes cached and the users'
	// sessions opened; then with ws websockets held open.
	heap0, heapN, heapWS float64
	rss0, rssN, rssWS    float64
	ws                   int
	wsErr                string
	// The same websockets through plain Caddy (to the bench user's app):
	// its heap and RSS before and with them open.
	plainHeap0, plainHeapWS, plainRSS0, plainRSSWS float64
	restartAll                                     time.Duration
	healthReady                                    time.Duration
	restartErrs                                    int
	spawnsAfter                                    int
	// spreadErrs are the few failed requests of the spread runs.
	spreadErrs []string
}

// memAvailableMB reads MemAvailable from /proc/meminfo.
func memAvailableMB() float64 { return meminfoMB("MemAvailable:") }

// memTotalMB reads MemTotal from /proc/meminfo.
func memTotalMB() float64 { return meminfoMB("MemTotal:") }

// meminfoMB reads one field of /proc/meminfo, in MB.
func meminfoMB(field string) float64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// raiseNeighbourTable sets net.ipv4.neigh.default.gc_thresh{1,2,3} to
// 4096/8192/16384 when they are lower (root only) and returns what puts
// them back.
func raiseNeighbourTable() func() {
	want := map[string]string{"gc_thresh1": "4096", "gc_thresh2": "8192", "gc_thresh3": "16384"}
	old := map[string]string{}
	for k, v := range want {
		f := "/proc/sys/net/ipv4/neigh/default/" + k
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		cur := strings.TrimSpace(string(b))
		if n, _ := strconv.Atoi(cur); n >= 4096 {
			continue
		}
		if err := os.WriteFile(f, []byte(v), 0o644); err != nil {
			log.Printf("scale: cannot raise %s (%v): requests spread over 1,000 servers may wait on ARP", k, err)
			continue
		}
		old[f] = cur
		log.Printf("scale: net.ipv4.neigh.default.%s %s -> %s for the run", k, cur, v)
	}
	return func() {
		for f, v := range old {
			_ = os.WriteFile(f, []byte(v), 0o644)
		}
	}
}

// parentPid returns pid's parent (the containerd shim of a container's
// first process), or 0.
func parentPid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// rssMB is a process's resident memory.
func rssMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// heapMB forces a GC in p (through pprof's heap endpoint with gc=1) and
// returns its live heap (go_memstats_heap_inuse_bytes from the admin
// endpoint's /metrics).
func heapMB(ctx context.Context, p *caddyProc) (float64, error) {
	c := &http.Client{Timeout: 30 * time.Second}
	get := func(path string) (string, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.admin+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%s: status %d", path, resp.StatusCode)
		}
		return string(body), err
	}
	if _, err := get("/debug/pprof/heap?gc=1"); err != nil {
		return 0, err
	}
	m, err := get("/metrics")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(m, "\n") {
		if v, ok := strings.CutPrefix(line, "go_memstats_heap_inuse_bytes "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f / (1 << 20), nil
		}
	}
	return 0, fmt.Errorf("no go_memstats_heap_inuse_bytes in %s's /metrics", p.label)
}

// loginAll logs the users in, 8 at a time.
func (b *bench) loginAll(ctx context.Context, users []string) ([]*userSession, error) {
	sessions := make([]*userSession, len(users))
	idx := make([]int, len(users))
	for i := range idx {
		idx[i] = i
	}
	err := parallel(ctx, 8, idx, func(i int) error {
		s, err := b.login(ctx, users[i])
		sessions[i] = s
		return err
	})
	return sessions, err
}

// scaleRun starts up to BENCH_SCALE_N users' servers through hubgate
// (fewer when the machine's memory or the time budget would not hold
// them: sized on a first batch), compares hubgate's CPU per request spread
// over all of them with one, restarts hubgate and measures until every
// one answers through it, measures its memory per route, and holds
// BENCH_SCALE_WS idle websockets open for their memory.
func (b *bench) scaleRun(ctx context.Context) error {
	res := &scaleResult{asked: b.cfg.scaleN}
	b.res.scale = res
	// A thousand containers on one bridge need more neighbour (ARP)
	// entries than Linux keeps by default (gc_thresh3 = 1024, and entries
	// above gc_thresh2 = 512 are collected within seconds): requests
	// spread over all of them then wait on ARP and time out. Raise the
	// thresholds for the run, as a host for that many servers must.
	restore := raiseNeighbourTable()
	defer restore()
	b.res.loadScale = loadAvg()
	log.Printf("scale: up to %d users' servers (load average %.2f, %.0f MB available)", res.asked, b.res.loadScale, memAvailableMB())
	users := make([]string, res.asked)
	for i := range users {
		users[i] = scaleUser(i)
	}
	sessions, err := b.loginAll(ctx, users)
	if err != nil {
		return err
	}
	start := func(ss []*userSession) error {
		return parallel(ctx, 20, ss, func(s *userSession) error {
			_, err := b.untilServed(ctx, s, 10*time.Minute)
			s.client.CloseIdleConnections()
			return err
		})
	}
	// First batch: what one more server costs in memory and time.
	batch := min(20, res.asked)
	avail0 := memAvailableMB()
	t0 := time.Now()
	if err := start(sessions[:batch]); err != nil {
		return err
	}
	res.firstBatch, res.firstBatchTime = batch, time.Since(t0)
	var total float64
	for _, s := range sessions[:batch] {
		a, err := findUserContainer(ctx, b.dk, b.name, s.user)
		if err != nil {
			return err
		}
		total += rssMB(a.Pid) + rssMB(parentPid(a.Pid))
	}
	res.perContainerMB = total / float64(batch)
	avail := memAvailableMB()
	res.perServerAvailMB = (avail0 - avail) / float64(batch)
	// RSS counts the shims' shared binary once per shim; the fall of
	// MemAvailable is what one more server really costs. Size by the
	// fall (at least 2 MB, against a page cache that grew meanwhile),
	// and keep 3 GiB or 15% of the machine free, whichever is more.
	per := max(res.perServerAvailMB, 2.0)
	reserve := max(3072, memTotalMB()*0.15)
	n := res.asked
	if fit := int((avail - reserve) / per); fit+batch < n {
		n = max(batch, fit+batch)
		res.sized = fmt.Sprintf("memory: MemAvailable fell %.1f MB per server, %.0f MB available, %.0f MB kept free", per, avail, reserve)
	}
	budget := envDuration("BENCH_SCALE_BUDGET", 4*time.Minute)
	if per := res.firstBatchTime / time.Duration(batch); per > 0 && time.Duration(n-batch)*per > budget {
		n = batch + int(budget/per)
		res.sized = fmt.Sprintf("time: %s per start at 20 at once on the first batch, BENCH_SCALE_BUDGET=%s", per.Round(time.Millisecond), budget)
	}
	res.n = n
	sessions = sessions[:n]
	log.Printf("scale: first %d started in %s, %.1f MB each; going to %d%s", batch, res.firstBatchTime.Round(time.Millisecond), res.perContainerMB, n,
		map[bool]string{true: " (" + res.sized + ")", false: ""}[res.sized != ""])
	if err := start(sessions[batch:]); err != nil {
		return err
	}
	res.startAll = time.Since(t0)
	cs, err := b.dk.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", labelDeployment+"="+b.name))})
	if err != nil {
		return err
	}
	res.running = len(cs)
	log.Printf("scale: %d servers started in %s; %d containers running", n, res.startAll.Round(time.Second), res.running)
	// Server side, as in the one-server runs: every app (the bench
	// user's too) on the server CPU, so that the proxies' CPU per request
	// is compared under the same neighbours; BENCH_SCALE_APP_CPUS=1 puts
	// them beside the load generator instead (scale is the last phase).
	appCPUs := envString("BENCH_SCALE_APP_CPUS", serverCPU)
	if err := parallel(ctx, 8, cs, func(c container.Summary) error {
		_, err := b.dk.ContainerUpdate(ctx, c.ID, container.UpdateConfig{Resources: container.Resources{CpusetCpus: appCPUs}})
		return err
	}); err != nil {
		return fmt.Errorf("pin the apps to CPU %s: %w", appCPUs, err)
	}

	if err := b.scaleSpread(ctx, sessions); err != nil {
		return err
	}
	if err := b.scaleRestart(ctx, sessions); err != nil {
		return err
	}
	if b.cfg.scaleWS > 0 {
		if err := b.scaleWebsockets(ctx, sessions); err != nil {
			res.wsErr = err.Error()
			log.Printf("scale: websockets: %v", err)
		}
	}
	return nil
}

// spreadRuns are one proxy's wrk runs to one server or to all.
type spreadRuns struct {
	rps, p99 []float64
	// cpu is the proxy's CPU µs per request.
	cpu []float64
}

// spreadSizes are the numbers of servers of the spread runs: one, every
// size of BENCH_SCALE_SPREAD (default 10 and 100) below n, and n. The
// sizes between tell a cost that grows with the number of routes from
// the step from one busy app to many sleeping ones, which any proxy
// pays from a few servers on.
func spreadSizes(n int, between string) []int {
	sizes := []int{1}
	for _, f := range strings.Split(between, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k <= sizes[len(sizes)-1] || k >= n {
			continue
		}
		sizes = append(sizes, k)
	}
	if n > 1 {
		sizes = append(sizes, n)
	}
	return sizes
}

// scaleSpread compares wrk spread over the users' servers (the first k
// of them, for every k of spreadSizes) with wrk on one (the same Lua
// script for all), over plain http, through hubgate and through plain
// Caddy in alternating order.
func (b *bench) scaleSpread(ctx context.Context, sessions []*userSession) error {
	res := b.res.scale
	res.sizes = spreadSizes(len(sessions), envString("BENCH_SCALE_SPREAD", "10,100"))
	res.hub, res.caddy = make([]spreadRuns, len(res.sizes)), make([]spreadRuns, len(res.sizes))
	apps := make([]appContainer, len(sessions))
	if err := parallel(ctx, 8, indexes(len(sessions)), func(i int) error {
		a, err := findUserContainer(ctx, b.dk, b.name, sessions[i].user)
		apps[i] = a
		return err
	}); err != nil {
		return fmt.Errorf("find the users' containers: %w", err)
	}
	hubLine := func(user, cookie string) string { return appPath(user, "whoami") + "\tCookie: " + cookie + "\n" }
	caddyLine := func(user string, a appContainer) string {
		return appPath(user, "whoami") + "\tX-Bench-Upstream: " + a.addr() + "\tX-Bench-Token: " + a.Token + "\n"
	}
	files := map[string]string{
		"hub-1":   hubLine("bench", b.main.cookie),
		"caddy-1": caddyLine("bench", b.app),
	}
	for _, k := range res.sizes[1:] {
		var hubK, caddyK strings.Builder
		for i, s := range sessions[:k] {
			hubK.WriteString(hubLine(s.user, s.cookie))
			caddyK.WriteString(caddyLine(s.user, apps[i]))
		}
		files["hub-"+strconv.Itoa(k)], files["caddy-"+strconv.Itoa(k)] = hubK.String(), caddyK.String()
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(b.work, "targets-"+name+".txt"), []byte(body), 0o644); err != nil {
			return err
		}
	}
	// Plain Caddy with its upstream and the container secret from the
	// request (both placeholders of bench/Caddyfile).
	dyn, err := b.newPlain("plain caddy (upstream from request headers)", "plain-dynamic",
		"{http.request.header.X-Bench-Upstream}", "{http.request.header.X-Bench-Token}")
	if err == nil {
		b.cl.add("stop "+dyn.label, dyn.stop)
		defer dyn.stop()
		if err = dyn.start(); err == nil {
			err = dyn.waitURLWith(ctx, dyn.httpURL(appPath("bench", "whoami")),
				http.Header{"X-Bench-Upstream": {b.app.addr()}, "X-Bench-Token": {b.app.Token}}, time.Minute)
		}
	}
	if err != nil {
		res.caddyErr = err.Error()
		log.Printf("scale: plain Caddy with dynamic upstreams: %v", err)
		dyn = nil
	}
	var variants []spreadVariant
	for i, k := range res.sizes {
		variants = append(variants, spreadVariant{name: "hub-" + strconv.Itoa(k), proxy: b.hub, runs: &res.hub[i]})
	}
	if dyn != nil {
		for i, k := range res.sizes {
			variants = append(variants, spreadVariant{name: "caddy-" + strconv.Itoa(k), proxy: dyn, runs: &res.caddy[i]})
		}
	}
	if err := b.spreadRounds(ctx, variants); err != nil {
		return err
	}
	// Then one server through each proxy at the rate that proxy reached
	// spread over all n.
	last := len(res.sizes) - 1
	if last < 1 {
		return nil
	}
	paced := []spreadVariant{{name: "hub-1", proxy: b.hub, pace: paceFor(median(res.hub[last].rps)), runs: &res.hubPaced}}
	if dyn != nil {
		paced = append(paced, spreadVariant{name: "caddy-1", proxy: dyn, pace: paceFor(median(res.caddy[last].rps)), runs: &res.caddyPaced})
	}
	return b.spreadRounds(ctx, paced)
}

// spreadVariant is one proxy's wrk runs over the servers of one targets
// file (bench/out/work/targets-<name>.txt).
type spreadVariant struct {
	name  string
	proxy *caddyProc
	// pace is the ms each connection waits after each response (0: as
	// fast as it can).
	pace int
	runs *spreadRuns
}

// spreadRounds runs wrk for every variant once a round, each round
// starting one further along the list, and adds the runs to the
// variants' spreadRuns.
func (b *bench) spreadRounds(ctx context.Context, variants []spreadVariant) error {
	res := b.res.scale
	for round := range max(b.cfg.rounds, 2) {
		for k := range variants {
			v := variants[(k+round)%len(variants)]
			file := filepath.Join(b.work, "targets-"+v.name+".txt")
			d := max(b.cfg.duration, 3*time.Second)
			label, comment := v.name, "# file: one 'path<TAB>Cookie: ...' line per user (plain Caddy: 'path<TAB>X-Bench-Upstream: ...<TAB>X-Bench-Token: ...')"
			var env []string
			if v.pace > 0 {
				env = []string{"BENCH_WRK_DELAY_MS=" + strconv.Itoa(v.pace)}
				label += fmt.Sprintf(" paced (%d ms after each response)", v.pace)
				comment = "# one server at the spread's rate: each connection waits that many ms after each response"
			}
			var prof chan error
			if b.cfg.pprof && round == 0 && v.pace == 0 {
				// A CPU profile of each proxy under each spread
				// (BENCH_PPROF=1): bench/out/pprof-scale-{hub,caddy}-{size}-cpu.pb.gz.
				d = time.Duration(b.cfg.pprofSeconds+3) * time.Second
				prof = b.cpuProfile(ctx, v.proxy, b.cfg.pprofSeconds, "pprof-scale-"+v.name+"-cpu.pb.gz")
			}
			r, args, err := b.wrkEnv(ctx, env, v.proxy.httpURL(""), nil, spreadConns, d, v.proxy, "rotate.lua", file)
			if prof != nil {
				if perr := <-prof; perr != nil {
					log.Printf("scale profile: %v", perr)
				}
				inProfile := float64(r.Requests) * float64(b.cfg.pprofSeconds) / (float64(r.DurationUS) / 1e6)
				_ = os.WriteFile(filepath.Join(b.out, "pprof-scale-"+v.name+"-requests.txt"), []byte(fmt.Sprintf("%.0f\n", inProfile)), 0o644)
			}
			if err == nil {
				err = res.addSpreadRun(v.runs, r, label)
			}
			if err != nil {
				return err
			}
			if round == 0 && v.name == "hub-1" {
				b.res.commands = append(b.res.commands, strings.Join(append(env, "taskset -c "+clientCPU+" wrk "+shownArgs(args, target{})), " ")+"   "+comment)
			}
			log.Printf("scale round %d %s: %.0f req/s, p99 %.2fms, proxy CPU %.0fµs per request", round+1, label, r.RPS, r.P99/1000, r.perRequest(r.ProxyCPU))
		}
	}
	return nil
}

// addSpreadRun adds wrk run r of the variant named name to runs. A
// handful of failed requests among 1,000 servers is reported; more than
// one in a thousand fails the run.
func (res *scaleResult) addSpreadRun(runs *spreadRuns, r wrkRun, name string) error {
	if e := r.errors(); e > 0 {
		detail := fmt.Sprintf("%d of %d requests of %s failed (status %d, connect %d, read %d, write %d, timeout %d)",
			e, r.Requests, name, r.ErrStatus, r.ErrConnect, r.ErrRead, r.ErrWrite, r.ErrTimeout)
		if e*1000 > r.Requests {
			return errors.New("wrk: " + detail)
		}
		log.Printf("scale: %s", detail)
		res.spreadErrs = append(res.spreadErrs, detail)
	}
	runs.rps, runs.p99, runs.cpu = append(runs.rps, r.RPS), append(runs.p99, r.P99), append(runs.cpu, r.perRequest(r.ProxyCPU))
	return nil
}

// spreadConns is the number of wrk connections of the spread runs.
const spreadConns = 64

// paceFor is the wait in ms after each response that brings
// spreadConns connections to about rps requests a second, when a
// response itself takes well under that.
func paceFor(rps float64) int {
	if rps <= 0 {
		return 0
	}
	return max(int(math.Round(spreadConns*1000/rps)), 1)
}

// indexes returns 0, 1, ..., n-1.
func indexes(n int) []int {
	is := make([]int, n)
	for i := range is {
		is[i] = i
	}
	return is
}

// cpuProfile takes a CPU profile of p for secs from its admin endpoint,
// starting a second from now, into bench/out/file.
func (b *bench) cpuProfile(ctx context.Context, p *caddyProc, secs int, file string) chan error {
	done := make(chan error, 1)
	go func() {
		time.Sleep(time.Second)
		c := &http.Client{Timeout: time.Duration(secs+30) * time.Second}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.admin, secs), nil)
		resp, err := c.Do(req)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(b.out, file), body, 0o644)
		}
		done <- err
	}()
	return done
}

// scaleRestart restarts hubgate and measures from the new process's
// start until every user's server answers through it; then its memory
// with every route known.
func (b *bench) scaleRestart(ctx context.Context, sessions []*userSession) error {
	res := b.res.scale
	b.hub.stop()
	if err := b.startHubProcNoWait(); err != nil {
		return err
	}
	start := b.hub.started
	if err := b.hub.waitURL(ctx, b.hub.httpURL("/hub/health"), time.Minute); err != nil {
		return err
	}
	res.healthReady = time.Since(start)
	// The baseline: the new process before any user request (its route
	// listing may be on its way; the heap then holds little of it).
	if h, err := heapMB(ctx, b.hub); err == nil {
		res.heap0, res.rss0 = h, rssMB(b.hub.pid())
	}
	var mu sync.Mutex
	var last time.Duration
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32, Proxy: nil}}
	defer client.CloseIdleConnections()
	err := parallel(ctx, 32, sessions, func(s *userSession) error {
		hdr := http.Header{"Accept": {"application/json"}, "Cookie": {s.cookie}}
		for {
			st, _, _, err := fetch(ctx, client, http.MethodGet, b.hub.httpURL(appPath(s.user, "whoami")), hdr, nil)
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
	res.restartAll = last
	res.spawnsAfter = b.countLog(`"msg":"spawn"`)
	client.CloseIdleConnections()
	if h, err := heapMB(ctx, b.hub); err == nil {
		res.heapN, res.rssN = h, rssMB(b.hub.pid())
	}
	log.Printf("scale: restart to all %d served: %s (health after %s; %d non-200 on the way; %d spawns after restart); heap %.1f → %.1f MB",
		len(sessions), res.restartAll.Round(time.Millisecond), res.healthReady.Round(time.Millisecond), res.restartErrs, res.spawnsAfter, res.heap0, res.heapN)
	return nil
}

// scaleWebsockets opens BENCH_SCALE_WS websockets through hubgate, spread
// over the users' servers, checks one echo on each, holds them idle and
// measures hubgate's memory; then closes them and does the same through
// plain Caddy (all to the bench user's app) for comparison.
func (b *bench) scaleWebsockets(ctx context.Context, sessions []*userSession) error {
	res := b.res.scale
	n := b.cfg.scaleWS
	urls := make([]string, n)
	hdrs := make([]http.Header, n)
	for i := range n {
		s := sessions[i%len(sessions)]
		urls[i] = strings.Replace(b.hub.httpURL(appPath(s.user, "ws")), "http:", "ws:", 1)
		hdrs[i] = http.Header{"Cookie": {s.cookie}}
	}
	closeAll, err := holdWebsockets(ctx, urls, hdrs)
	if err != nil {
		closeAll()
		return err
	}
	time.Sleep(time.Second)
	h, err := heapMB(ctx, b.hub)
	closeAll()
	if err != nil {
		return err
	}
	res.ws, res.heapWS, res.rssWS = n, h, rssMB(b.hub.pid())
	log.Printf("scale: %d idle websockets open through hubgate: heap %.1f MB, RSS %.1f MB (before: %.1f, %.1f)", n, res.heapWS, res.rssWS, res.heapN, res.rssN)

	if res.plainHeap0, err = heapMB(ctx, b.plain); err != nil {
		return err
	}
	res.plainRSS0 = rssMB(b.plain.pid())
	for i := range urls {
		urls[i] = strings.Replace(b.plain.httpURL(appPath("bench", "ws")), "http:", "ws:", 1)
		hdrs[i] = nil
	}
	closeAll, err = holdWebsockets(ctx, urls, hdrs)
	defer closeAll()
	if err != nil {
		return fmt.Errorf("through plain Caddy: %w", err)
	}
	time.Sleep(time.Second)
	if res.plainHeapWS, err = heapMB(ctx, b.plain); err != nil {
		return err
	}
	res.plainRSSWS = rssMB(b.plain.pid())
	log.Printf("scale: %d idle websockets open through plain Caddy: heap %.1f → %.1f MB, RSS %.1f → %.1f MB", n, res.plainHeap0, res.plainHeapWS, res.plainRSS0, res.plainRSSWS)
	return nil
}

// holdWebsockets dials every url (16 at a time), checks one echo on each
// and leaves them open; the returned func closes them all.
func holdWebsockets(ctx context.Context, urls []string, hdrs []http.Header) (func(), error) {
	n := len(urls)
	conns := make([]*websocket.Conn, n)
	closeAll := func() {
		for _, c := range conns {
			if c != nil {
				_ = c.CloseNow()
			}
		}
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
	err := parallel(ctx, 16, idx, func(i int) error {
		dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(dctx, urls[i], &websocket.DialOptions{HTTPClient: client, HTTPHeader: hdrs[i]})
		if err != nil {
			return fmt.Errorf("websocket %d (%s): %w", i, urls[i], err)
		}
		conns[i] = c
		if err := c.Write(dctx, websocket.MessageText, []byte("hi")); err != nil {
			return err
		}
		_, msg, err := c.Read(dctx)
		if err != nil || string(msg) != "hi" {
			return fmt.Errorf("websocket %d echo: %q, %v", i, msg, err)
		}
		return nil
	})
	return closeAll, err
}
