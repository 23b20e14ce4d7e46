// Command run is `make bench`: on loopback, in one go, it measures the cost
// of hubgate's proxy path beside its anchors, and its container lifecycle,
// and writes the tables to bench/results.md.
//
// It starts hubgate (bin/caddy with bench/hubgate.Caddyfile: the
// repository's hubgate config without the access log, on https and on a
// plain-http port), logs a user in through the login form and lets hubgate
// start that user's test app container. That one container is then the
// upstream of every target, so the app's own cost is the same for each:
//
//	direct    http://<container ip>:8888 with the container's token
//	caddy     bin/caddy with bench/Caddyfile: reverse_proxy to the same
//	          container with hubgate's transport settings
//	chp       configurable-http-proxy (Debian's), the route added through
//	          its REST API as JupyterHub does (two processes: http, https)
//	o2p       oauth2-proxy (go install), a cookie session from its own
//	          htpasswd sign-in form
//	hubgate   hubgate with the user's session cookie
//
// The server side (every proxy with GOMAXPROCS=1 for the Go ones, and the
// app container) is pinned to CPU 0, wrk and the websocket client to
// CPU 1. wrk runs every target in every workload (100 B and 64 KiB bodies,
// 1 and 64 connections, http and https) in alternating rounds, and the
// proxy's CPU per request comes from its /proc/<pid>/stat over each run;
// in every round plain Caddy and hubgate also run at the same time, one
// wrk each, so that the machine's changing speed reaches both alike (the
// verdict's ratio); then websocket echo round trips (bench/wsrtt) through
// each, and through the pair at the same time. Then the
// lifecycle: cold start (a new user's first request through hubgate, to
// the app's first 200, with the Debian Jupyter image when it is built)
// against a bare create + start + first answer of the same image on the
// same network; two hundred new users whose first requests arrive
// together; and, with BENCH_SCALE=1, up to a thousand running servers
// (CPU per request spread over all against one, through hubgate and
// through a plain Caddy that takes each request's upstream from its
// headers; memory per route and per idle websocket, a gateway restart
// until all answer). The apps run on the server CPU as in the one-server
// runs; BENCH_SCALE_APP_CPUS=1 moves them beside the load generator.
//
// No target is called met or missed when the 1-minute load average was
// above 1.5 at the start or the end: results.md says "not judged: machine
// busy" instead.
//
// Everything it starts (processes, containers, volumes, the network) is
// removed when it ends, also on error or Ctrl-C; a later run also sweeps
// what a killed run left behind. Settings (environment; the defaults are
// issue 17's method, 5 alternating rounds of 8 s, and the 1,000-server
// run: about 50 minutes in all on a 2-core machine; BENCH_DURATION=2s
// BENCH_ROUNDS=3 BENCH_SCALE=0 gives a first look in about 8):
//
//	BENCH_DURATION=8s BENCH_WARMUP=1s BENCH_ROUNDS=5 BENCH_THREADS=2
//	BENCH_CONNS=1,64 BENCH_TLS=1 BENCH_WS_MSGS=10000 BENCH_WS_CONNS=16
//	BENCH_WS_ROUNDS=5 BENCH_COLD=12 BENCH_COLD_PAIRED=1 BENCH_COLD_LEAD=50ms
//	BENCH_COLD_IMAGE=hubgate/jupyter-debian:latest
//	BENCH_COLD_PORT=8888 BENCH_COLD_HOME=/home/jovyan BENCH_COLD_PATH=api/status
//	BENCH_CROWD=200 BENCH_SCALE=1 BENCH_SCALE_N=1000 BENCH_SCALE_WS=1000
//	BENCH_SCALE_BUDGET=4m BENCH_SCALE_APP_CPUS=0 BENCH_SCALE_SPREAD=10,100 (the sizes
//	spread over between one server and all) BENCH_GO=0 BENCH_OAUTH2_PROXY=<path>
//	BENCH_SETTLE=5m (the longest wait, at the start, before the cold
//	starts and before the scale run, for the 1-minute load average to
//	fall to 1.0)
//	BENCH_PAIRED=1 (in every round and workload, and for websockets,
//	plain Caddy and hubgate also run at the same time, one client each:
//	the verdict's ratio; 0 leaves it out)
//	BENCH_ONLY=throughput,ws,cold,crowd,scale BENCH_RESULTS=bench/results.md
//
// BENCH_PPROF=1 also takes CPU and allocation profiles of plain Caddy and
// of hubgate (from their admin endpoints' /debug/pprof/) under the plain
// http 100 B, 64-connection load for BENCH_PPROF_SECONDS=10, into
// bench/out/pprof-{caddy,hubgate}-{cpu,allocs0,allocs1}.pb.gz, and CPU
// profiles of both under each spread of the scale run, into
// bench/out/pprof-scale-{hub,caddy}-{1,n}-cpu.pb.gz; see bench/PROFILE.md
// for how to read them.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
)

// config is what the environment may change.
type config struct {
	duration, warmup time.Duration
	rounds           int
	threads          int
	connSet          []int
	tls              bool
	wsMsgs, wsConns  int
	wsRounds         int
	cold, crowd      int
	// coldPaired starts each pair of cold starts (hubgate, bare Docker)
	// at the same time (BENCH_COLD_PAIRED=1); 0 alternates them.
	coldPaired bool
	// coldLead is how far ahead the side that goes first in a pair
	// starts (BENCH_COLD_LEAD); the sides take turns.
	coldLead  time.Duration
	coldImage string
	coldPort  string
	scale     bool
	scaleN    int
	scaleWS   int
	goBench   bool
	// paired also runs plain Caddy and hubgate at the same time in every
	// round and workload (wrkPair, BENCH_PAIRED=0 leaves it out).
	paired       bool
	pprof        bool
	pprofSeconds int
	results      string
	// settle is the longest wait for a quiet machine (settle).
	settle time.Duration
}

func loadConfig() config {
	return config{
		duration:     envDuration("BENCH_DURATION", 8*time.Second),
		warmup:       envDuration("BENCH_WARMUP", 1*time.Second),
		rounds:       envInt("BENCH_ROUNDS", 5),
		threads:      envInt("BENCH_THREADS", 2),
		connSet:      envInts("BENCH_CONNS", []int{1, 64}),
		tls:          envInt("BENCH_TLS", 1) != 0,
		wsMsgs:       envInt("BENCH_WS_MSGS", 10000),
		wsConns:      envInt("BENCH_WS_CONNS", 16),
		wsRounds:     envInt("BENCH_WS_ROUNDS", 5),
		cold:         envInt("BENCH_COLD", 12),
		coldLead:     envDuration("BENCH_COLD_LEAD", 50*time.Millisecond),
		coldPaired:   envInt("BENCH_COLD_PAIRED", 1) != 0,
		coldImage:    envString("BENCH_COLD_IMAGE", "hubgate/jupyter-debian:latest"),
		coldPort:     envString("BENCH_COLD_PORT", "8888"),
		crowd:        envInt("BENCH_CROWD", 200),
		scale:        envInt("BENCH_SCALE", 1) != 0,
		scaleN:       envInt("BENCH_SCALE_N", 1000),
		scaleWS:      envInt("BENCH_SCALE_WS", 1000),
		goBench:      envInt("BENCH_GO", 0) != 0,
		paired:       envInt("BENCH_PAIRED", 1) != 0,
		pprof:        envInt("BENCH_PPROF", 0) != 0,
		pprofSeconds: envInt("BENCH_PPROF_SECONDS", 10),
		results:      envString("BENCH_RESULTS", "bench/results.md"),
		settle:       envDuration("BENCH_SETTLE", 5*time.Minute),
	}
}

func envString(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envInt(k string, def int) int {
	v := os.Getenv(k)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		log.Fatalf("%s=%q: want a non-negative integer", k, v)
	}
	return n
}

// envInts reads a comma-separated list of positive integers.
func envInts(k string, def []int) []int {
	v := os.Getenv(k)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			log.Fatalf("%s=%q: want positive integers separated by commas", k, v)
		}
		out = append(out, n)
	}
	return out
}

func envDuration(k string, def time.Duration) time.Duration {
	v := os.Getenv(k)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		log.Fatalf("%s=%q: want a positive duration", k, v)
	}
	return d
}

// bench is one run of the benchmark.
type bench struct {
	cfg      config
	root     string // repository root
	out      string // bench/out
	work     string // bench/out/work: this run's files
	caddyBin string
	name     string // hubgate deployment name (also its network)
	password string // every bench account's password

	dk     *client.Client
	cl     cleaner
	goTest string // caddymodule's test binary, built at the start
	hub    *caddyProc
	plain  *caddyProc
	// The anchors beside plain Caddy (nil when they could not start).
	chp, chpTLS *caddyProc
	o2p, o2pTLS *caddyProc
	o2pCookie   string
	hubN        int // hubgate process generation, for log names

	main *userSession // the "bench" user, whose container every target shares
	app  appContainer
	// coldImageOK: the cold start image (BENCH_COLD_IMAGE) is on the engine.
	coldImageOK bool

	res results
}

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("bench: ")
	b := &bench{cfg: loadConfig()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	// If make (our parent) is killed, clean up all the same.
	const prSetPdeathsig = 1
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetPdeathsig, uintptr(syscall.SIGTERM), 0)
	go func() {
		s := <-sigs
		log.Printf("%s: stopping and cleaning up", s)
		cancel()
		b.cl.run()
		os.Exit(130)
	}()
	defer func() {
		if r := recover(); r != nil {
			log.Printf("panic: %v", r)
			b.cl.run()
			panic(r)
		}
	}()

	err := b.run(ctx)
	b.cl.run()
	if err != nil {
		log.Printf("FAILED: %v", err)
		b.res.failure = err.Error()
	}
	b.finish(ctx)
	if err != nil {
		os.Exit(1)
	}
}

// run does every measurement; the caller cleans up.
func (b *bench) run(ctx context.Context) error {
	var err error
	if b.root, err = os.Getwd(); err != nil {
		return err
	}
	b.caddyBin = filepath.Join(b.root, "bin", "caddy")
	for _, need := range []string{b.caddyBin, filepath.Join(b.root, "Caddyfile"), filepath.Join(b.root, "bench", "Caddyfile")} {
		if _, err := os.Stat(need); err != nil {
			return fmt.Errorf("run from the repository root after `make build`: %w", err)
		}
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk is missing: `apt-get install wrk` (make bench does it)")
	}
	b.out = filepath.Join(b.root, "bench", "out")
	b.work = filepath.Join(b.out, "work")
	if err := os.RemoveAll(b.work); err != nil {
		return err
	}
	if err := os.MkdirAll(b.work, 0o755); err != nil {
		return err
	}
	if b.dk, err = newDocker(); err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	if _, err := b.dk.Ping(ctx); err != nil {
		return fmt.Errorf("the Docker engine is not reachable: %w", err)
	}
	for _, stale := range staleOwners(b.out) {
		log.Printf("sweeping what an interrupted run (%s) left behind", stale)
		if !sweep(b.dk, stale, false) {
			log.Printf("could not remove all of %s (see above); giving up on it", stale)
		}
		releaseOwner(b.out, stale)
	}

	if !haveTaskset() {
		return errors.New("taskset (util-linux) is missing: the benchmark pins the servers and the load generator to separate CPUs")
	}
	if _, _, err := b.dk.ImageInspectWithRaw(ctx, b.cfg.coldImage); err == nil {
		b.coldImageOK = true
	} else if b.cfg.cold > 0 {
		note := fmt.Sprintf("the cold start image %s is not on the engine (%v): build it with images/jupyter-debian/build.sh (needs root and debootstrap); the cold start is measured with hubgate/testapp instead", b.cfg.coldImage, err)
		log.Printf("WARNING: %s", note)
		b.res.notes = append(b.res.notes, note)
	}
	b.res.started = time.Now()
	b.res.machine = machineInfo(ctx, b.root, b.caddyBin)
	if b.cfg.goBench {
		b.compileGoBenchmarks(ctx)
	}
	// make bench has just built bin/caddy, the images and oauth2-proxy:
	// let the load average fall before the first figure is taken.
	settle(b.cfg.settle)
	b.res.uptimeBefore, b.res.loadBefore = uptime(), loadAvg()
	b.res.busyBefore = sampleBusy(2 * time.Second)
	b.res.cpuBefore = readCPU(nil)
	log.Printf("machine: %s, %s cores; %s; others busy %.0f%% of the machine", b.res.machine.cpu, b.res.machine.nproc, b.res.uptimeBefore, b.res.busyBefore)

	b.name = "hgbench" + randomHex(3)
	if err := claimOwner(b.out, b.name); err != nil {
		return err
	}
	swept := false
	b.cl.add("release the run's claim", func() {
		if swept {
			releaseOwner(b.out, b.name)
		} else {
			log.Printf("keeping bench/out/owners/%s: the next run sweeps what is left", b.name)
		}
	})
	b.cl.add("remove the containers, volumes and network of "+b.name, func() { swept = sweep(b.dk, b.name, true) })

	if err := b.startHubgate(ctx); err != nil {
		return err
	}
	if err := b.prepareMain(ctx); err != nil {
		return err
	}
	if err := b.startPlain(ctx); err != nil {
		return err
	}
	certPath, keyPath, err := selfSignedCert(b.work)
	if err != nil {
		return fmt.Errorf("anchor certificate: %w", err)
	}
	if b.phase("throughput") || b.phase("ws") {
		b.optionalAnchor("configurable-http-proxy", func() error { return b.startCHP(ctx, certPath, keyPath) })
		b.optionalAnchor("oauth2-proxy", func() error { return b.startOAuth2Proxy(ctx, certPath, keyPath) })
	}
	if err := b.putBodies(ctx); err != nil {
		return err
	}
	if err := b.checkTargets(ctx); err != nil {
		return err
	}
	if b.phase("throughput") {
		if err := b.throughput(ctx); err != nil {
			return fmt.Errorf("throughput: %w", err)
		}
	}
	if b.phase("ws") {
		if err := b.websockets(ctx); err != nil {
			return fmt.Errorf("websockets: %w", err)
		}
	}
	if b.cfg.pprof {
		if err := b.profile(ctx); err != nil {
			return fmt.Errorf("profile: %w", err)
		}
	}
	// The anchors are not needed for the lifecycle: stop them now.
	for _, p := range []*caddyProc{b.chp, b.chpTLS, b.o2p, b.o2pTLS} {
		if p != nil {
			p.stop()
		}
	}
	if b.cfg.cold > 0 && b.phase("cold") {
		// The proxy runs keep both CPUs busy (load ~3 after them): let it
		// fall first, or the cold starts measure the queue behind it.
		settle(b.cfg.settle)
		// Cold starts are no per-request CPU comparison: for them hubgate
		// runs on every CPU, as the bench's bare Docker client does
		// (pinned to the server CPU, its readiness probes and the first
		// request could wait there behind the starting notebooks, which
		// run anywhere). It goes back to the server CPU after.
		repin := unpin(b.hub.pid())
		err := b.coldStart(ctx)
		repin()
		if err != nil {
			return fmt.Errorf("cold start: %w", err)
		}
	}
	if b.cfg.crowd > 0 && b.phase("crowd") {
		if err := b.crowdStart(ctx); err != nil {
			return fmt.Errorf("crowd: %w", err)
		}
	}
	if b.cfg.scale && b.phase("scale") {
		// Removing the crowd's 200 containers leaves the engine busy
		// (load ~9 after it): the first batch, which sizes the run by
		// the time budget, would be timed behind that.
		settle(b.cfg.settle)
		if err := b.scaleRun(ctx); err != nil {
			return fmt.Errorf("scale: %w", err)
		}
	}
	return nil
}

// phase reports whether BENCH_ONLY (a comma-separated list of throughput,
// ws, cold, crowd, scale; default all) selects the phase.
func (b *bench) phase(name string) bool {
	only := os.Getenv("BENCH_ONLY")
	if only == "" {
		return true
	}
	for _, p := range strings.Split(only, ",") {
		if strings.TrimSpace(p) == name {
			return true
		}
	}
	return false
}

// finish runs the Go benchmarks (with nothing else of ours running) and
// writes the report.
func (b *bench) finish(ctx context.Context) {
	if b.cfg.goBench && b.res.failure == "" {
		b.goBenchmarks(ctx)
	}
	b.res.finished = time.Now()
	b.res.uptimeAfter, b.res.loadAfter = uptime(), loadAvg()
	b.res.stealDuring = stealShare(b.res.cpuBefore, readCPU(nil))
	b.res.busyAfter = sampleBusy(2 * time.Second)
	md := b.report()
	fmt.Println()
	fmt.Println(md)
	path := b.cfg.results
	if b.res.failure != "" {
		path = filepath.Join(b.out, "results-failed.md")
	}
	if !filepath.IsAbs(path) && b.root != "" {
		path = filepath.Join(b.root, path)
	}
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		log.Printf("write %s: %v", path, err)
		return
	}
	log.Printf("wrote %s", path)
}

// startHubgate writes the bench policy and starts hubgate with the
// repository's Caddyfile, as the end-to-end tests do.
func (b *bench) startHubgate(ctx context.Context) error {
	b.password = randomHex(12)
	out, err := exec.CommandContext(ctx, b.caddyBin, "hash-password", "--plaintext", b.password, "--bcrypt-cost", "6").Output()
	if err != nil {
		return fmt.Errorf("caddy hash-password: %w", err)
	}
	hash := strings.TrimSpace(string(out))
	users := []string{"bench"}
	for i := range b.cfg.cold + 1 {
		users = append(users, coldUser(i))
	}
	for i := range b.cfg.crowd {
		users = append(users, crowdUser(i))
	}
	if b.cfg.scale {
		for i := range b.cfg.scaleN {
			users = append(users, scaleUser(i))
		}
	}
	var pol strings.Builder
	pol.WriteString("# Written by bench/run for one benchmark run.\nadmins: [bench]\n")
	pol.WriteString("images:\n  notebook: {image: \"hubgate/testapp:latest\", port: 8888, description: \"Test app\"}\n")
	teamImages := "notebook"
	if b.coldImageOK {
		fmt.Fprintf(&pol, "  cold: {image: %q, port: %s, home: %q, description: \"Cold start image\"}\n", b.cfg.coldImage, b.cfg.coldPort, envString("BENCH_COLD_HOME", "/home/jovyan"))
		teamImages += ", cold"
	}
	pol.WriteString("teams:\n  bench:\n    images: [" + teamImages + "]\n    members:\n")
	for _, u := range users {
		fmt.Fprintf(&pol, "      - %s\n", u)
	}
	pol.WriteString("accounts:\n")
	for _, u := range users {
		fmt.Fprintf(&pol, "  %s: %q\n", u, hash)
	}
	policyDir := filepath.Join(b.work, "policy")
	if err := os.MkdirAll(policyDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(policyDir, "policy.yaml"), []byte(pol.String()), 0o644); err != nil {
		return err
	}

	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	httpsPort, httpPort, adminPort, plainPort := ports[0], ports[1], ports[2], ports[3]
	env := map[string]string{
		"HUBGATE_HTTPS_PORT": strconv.Itoa(httpsPort),
		"HUBGATE_HTTP_PORT":  strconv.Itoa(httpPort),
		"HUBGATE_PLAIN_PORT": strconv.Itoa(plainPort),
		"HUBGATE_ADMIN":      fmt.Sprintf("127.0.0.1:%d", adminPort),
		"HUBGATE_SITE":       "localhost",
		"HUBGATE_POLICY":     policyDir,
		"HUBGATE_NAME":       b.name,
		"XDG_DATA_HOME":      filepath.Join(b.work, "hubgate", "data"),
		"XDG_CONFIG_HOME":    filepath.Join(b.work, "hubgate", "config"),
	}
	b.hub = &caddyProc{
		label:      "hubgate",
		bin:        b.caddyBin,
		args:       []string{"run", "--config", filepath.Join(b.root, "bench", "hubgate.Caddyfile"), "--adapter", "caddyfile"},
		dir:        b.root,
		env:        mergeEnv(env),
		httpsPort:  httpsPort,
		httpPort:   plainPort,
		admin:      env["HUBGATE_ADMIN"],
		cpus:       serverCPU,
		goMaxProcs: 1,
	}
	b.res.hubEnv = env
	b.cl.add("stop hubgate", func() { b.hub.stop() })
	return b.startHubProc(ctx)
}

// startHubProc starts (or restarts) the hubgate process with a new log.
func (b *bench) startHubProc(ctx context.Context) error {
	b.hubN++
	b.hub.logPath = filepath.Join(b.work, fmt.Sprintf("hubgate-%d.log", b.hubN))
	if err := b.hub.start(); err != nil {
		return err
	}
	return b.hub.waitReady(ctx, "/hub/health", 60*time.Second)
}

// prepareMain logs the bench user in, lets hubgate start their container
// and finds its address and secret for the baselines.
func (b *bench) prepareMain(ctx context.Context) error {
	s, err := b.login(ctx, "bench")
	if err != nil {
		return err
	}
	b.main = s
	if _, err := b.untilServed(ctx, s, 90*time.Second); err != nil {
		return fmt.Errorf("start the bench user's server: %w", err)
	}
	if b.app, err = findUserContainer(ctx, b.dk, b.name, "bench"); err != nil {
		return err
	}
	// The app is server side too: it shares the server CPU.
	if _, err := b.dk.ContainerUpdate(ctx, b.app.ID, container.UpdateConfig{Resources: container.Resources{CpusetCpus: serverCPU}}); err != nil {
		return fmt.Errorf("pin the bench user's container to CPU %s: %w", serverCPU, err)
	}
	log.Printf("hubgate started the bench user's container %s at %s (pinned to CPU %s)", b.app.ID[:12], b.app.addr(), serverCPU)
	return nil
}

// startPlain starts plain Caddy (bench/Caddyfile) in front of the same
// container.
func (b *bench) startPlain(ctx context.Context) error {
	var err error
	if b.plain, err = b.newPlain("plain caddy", "plain", b.app.addr(), b.app.Token); err != nil {
		return err
	}
	hubLog, err := adaptedLogging(ctx, b.hub)
	if err != nil {
		return err
	}
	plainLog, err := adaptedLogging(ctx, b.plain)
	if err != nil {
		return err
	}
	if hubLog != plainLog {
		note := "the access log of bench/Caddyfile differs from bench/hubgate.Caddyfile's, so plain Caddy and hubgate do not log alike: make them equal"
		log.Printf("WARNING: %s\n  hubgate: %s\n  plain:   %s", note, hubLog, plainLog)
		b.res.notes = append(b.res.notes, note)
	}
	b.cl.add("stop plain caddy", func() { b.plain.stop() })
	if err := b.plain.start(); err != nil {
		return err
	}
	return b.plain.waitReady(ctx, appPath("bench", "whoami"), 60*time.Second)
}

// newPlain returns (not started) a plain Caddy of bench/Caddyfile
// proxying to upstream with the container secret token; both may be
// placeholders that Caddy fills per request. name names its work
// directory and log.
func (b *bench) newPlain(label, name, upstream, token string) (*caddyProc, error) {
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	httpsPort, httpPort, adminPort, redirectPort := ports[0], ports[1], ports[2], ports[3]
	env := map[string]string{
		"BENCH_HTTPS_PORT":    strconv.Itoa(httpsPort),
		"BENCH_HTTP_PORT":     strconv.Itoa(httpPort),
		"BENCH_REDIRECT_PORT": strconv.Itoa(redirectPort),
		"BENCH_ADMIN":         fmt.Sprintf("127.0.0.1:%d", adminPort),
		"BENCH_UPSTREAM":      upstream,
		"BENCH_TOKEN":         token,
		"XDG_DATA_HOME":       filepath.Join(b.work, name, "data"),
		"XDG_CONFIG_HOME":     filepath.Join(b.work, name, "config"),
	}
	return &caddyProc{
		label:      label,
		bin:        b.caddyBin,
		args:       []string{"run", "--config", filepath.Join(b.root, "bench", "Caddyfile"), "--adapter", "caddyfile"},
		dir:        b.root,
		env:        mergeEnv(env),
		httpsPort:  httpsPort,
		httpPort:   httpPort,
		admin:      env["BENCH_ADMIN"],
		logPath:    filepath.Join(b.work, name+".log"),
		cpus:       serverCPU,
		goMaxProcs: 1,
	}, nil
}

func mergeEnv(extra map[string]string) []string {
	env := os.Environ()
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

func randomHex(n int) string {
	p := make([]byte, n)
	_, _ = rand.Read(p)
	return hex.EncodeToString(p)
}

func appPath(user, rest string) string { return "/user/" + user + "/notebook/" + rest }

func coldUser(i int) string  { return fmt.Sprintf("cold%02d", i) }
func crowdUser(i int) string { return fmt.Sprintf("crowd%02d", i+1) }
func scaleUser(i int) string { return fmt.Sprintf("s%03d", i+1) }

// adaptedLogging returns the logging part of p's config as Caddy adapts
// it (the "logging" app and the server's "logs"), to check that plain
// Caddy and hubgate write the same access log.
func adaptedLogging(ctx context.Context, p *caddyProc) (string, error) {
	args := append([]string{"adapt"}, p.args[1:]...)
	cmd := exec.CommandContext(ctx, p.bin, args...)
	cmd.Dir, cmd.Env = p.dir, p.env
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("caddy adapt for %s: %w", p.label, err)
	}
	var cfg struct {
		Logging json.RawMessage `json:"logging"`
		Apps    struct {
			HTTP struct {
				Servers map[string]struct {
					Logs json.RawMessage `json:"logs"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		return "", fmt.Errorf("caddy adapt for %s: %w", p.label, err)
	}
	var logs []string
	for _, srv := range cfg.Apps.HTTP.Servers {
		logs = append(logs, string(srv.Logs))
	}
	sort.Strings(logs)
	return string(cfg.Logging) + " " + strings.Join(logs, " "), nil
}
