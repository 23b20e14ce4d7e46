package main

import (
	"context"
	"fmt"
	"log"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// results is everything the report shows.
type results struct {
	started, finished         time.Time
	machine                   machine
	uptimeBefore, uptimeAfter string
	loadBefore, loadAfter     float64
	busyBefore, busyAfter     float64
	// cpuBefore is the machine's CPU counters when the first figure was
	// taken; stealDuring the share stolen by the host from then to the end.
	cpuBefore   cpuSnap
	stealDuring float64
	hubEnv      map[string]string
	commands    []string
	failure     string
	notes       []string

	loadThroughput, loadWS, loadCold, loadCrowd, loadScale float64

	// wrk is by workload (cell key), then by target key.
	wrk map[string]map[string][]wrkRun
	// paired is plain Caddy's and hubgate's runs at the same time
	// (wrkPair), by workload and target, a run per round.
	paired map[string]map[string][]wrkRun
	ws     map[string][]wsRun
	// wsPaired is plain Caddy's and hubgate's round trips at the same
	// time (wsRunPair), by "target/mode", a run per round.
	wsPaired map[string][]wsRun
	wsModes  string
	profiled []string

	coldHub   []time.Duration
	coldBare  []bareTimes
	coldSpawn []time.Duration
	// coldSteps are hubgate's start steps (the spawn audit record's
	// "steps"), each step's durations over the cold starts.
	coldSteps                     map[string][]time.Duration
	coldHubRetries, coldHubErrors int

	crowd *crowdResult
	scale *scaleResult

	goBench, goBenchCmd string
}

// compileGoBenchmarks builds caddymodule's test binary at the start of the
// run, so that the Go benchmarks measure the same code as bin/caddy even
// when the tree changes while the benchmark runs.
func (b *bench) compileGoBenchmarks(ctx context.Context) {
	b.goTest = filepath.Join(b.work, "caddymodule.test")
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", b.goTest, "./caddymodule/web/")
	cmd.Dir = b.root
	if out, err := cmd.CombinedOutput(); err != nil {
		b.res.goBench = fmt.Sprintf("(go test -c ./caddymodule/ failed: %v)\n%s", err, out)
		b.goTest = ""
	}
}

// goBenchmarks runs caddymodule's Go benchmarks from the binary built at
// the start.
func (b *bench) goBenchmarks(ctx context.Context) {
	b.res.goBenchCmd = "go test -run='^$' -bench=. -benchmem -count=1 ./caddymodule/web/"
	if b.goTest == "" {
		return
	}
	log.Printf("Go benchmarks: %s", b.res.goBenchCmd)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, b.goTest, "-test.run=^$", "-test.bench=.", "-test.benchmem", "-test.count=1")
	cmd.Dir = filepath.Join(b.root, "caddymodule")
	out, err := cmd.CombinedOutput()
	var keep []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Benchmark") || strings.HasPrefix(line, "cpu:") || strings.HasPrefix(line, "PASS") ||
			strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "---") || err != nil {
			keep = append(keep, line)
		}
	}
	b.res.goBench = strings.TrimSpace(strings.Join(keep, "\n"))
	if err != nil {
		b.res.goBench += "\n(go test failed: " + err.Error() + ")"
	}
}

func ms(us float64) string { return fmt.Sprintf("%.2f ms", us/1000) }

func dms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

func dus(d time.Duration) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}

// maxJudgedLoad is the 1-minute load average above which (at the start
// or the end of the run) no target is called met or missed: on a busy
// 2-core machine the figures say more about the others than about us.
const maxJudgedLoad = 1.5

// maxJudgedOthers is the share of the machine (%) other processes may
// keep busy during the wrk runs (median) for the run to be judged. The
// load average at the end includes this run's own work, so it is shown but
// the others' share, measured from /proc without our processes, stands in
// for it.
const maxJudgedOthers = 25

// othersDuring is the median share of the machine other processes kept
// busy during the wrk runs.
func (r *results) othersDuring() float64 {
	var other []float64
	for _, byKey := range r.wrk {
		for _, runs := range byKey {
			for _, x := range runs {
				other = append(other, x.Other)
			}
		}
	}
	return median(other)
}

// busy reports a run whose figures are not judged.
func (r *results) busy() bool {
	return r.loadBefore > maxJudgedLoad || r.othersDuring() > maxJudgedOthers
}

// shortVerdict is verdict for a table cell.
func (b *bench) shortVerdict(ok bool) string {
	if b.res.busy() {
		return "not judged: machine busy"
	}
	return b.verdict(ok)
}

// verdict is met / missed, or "not judged" when the machine was busy.
func (b *bench) verdict(ok bool) string {
	if b.res.busy() {
		return fmt.Sprintf("not judged: machine busy (load average %.2f at the start, judged at ≤ %.1f; others kept %.0f%% of the machine busy during the runs, judged at ≤ %d%%)", b.res.loadBefore, maxJudgedLoad, b.res.othersDuring(), maxJudgedOthers)
	}
	if ok {
		return "**met**"
	}
	return "**missed**"
}

// verdictAt is verdict for a phase that is judged by the load average
// at its own start too (the cold start: the phases before it keep both
// CPUs busy, and settle waits for them to fall off).
func (b *bench) verdictAt(ok bool, load float64) string {
	if !b.res.busy() && load > maxJudgedLoad {
		return fmt.Sprintf("not judged: machine busy (load average %.2f at the start of this part, judged at ≤ %.1f)", load, maxJudgedLoad)
	}
	return b.verdict(ok)
}

// report renders results.md.
func (b *bench) report() string {
	r := &b.res
	var w strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&w, format+"\n", a...) }

	p("# hubgate benchmark")
	p("")
	p("Written by `make bench` (bench/run) on %s, in %s.", r.started.UTC().Format("2006-01-02 15:04 MST"), r.finished.Sub(r.started).Round(time.Second))
	p("")
	p("| machine | |")
	p("|---|---|")
	p("| `nproc` | %s |", r.machine.nproc)
	p("| CPU | %s |", r.machine.cpu)
	p("| memory | %s |", r.machine.mem)
	p("| kernel | %s |", r.machine.kernel)
	p("| Docker Engine | %s |", r.machine.docker)
	p("| Caddy (bin/caddy) | %s |", r.machine.caddy)
	p("| tree (hubgate's code: bin/caddy and the Go benchmarks were built from it at the start) | %s |", r.machine.git)
	p("| `uptime` before | `%s` |", r.uptimeBefore)
	p("| `uptime` after | `%s` |", r.uptimeAfter)
	p("| 1-minute load average before (targets judged only at ≤ %.1f) / after (includes this run's own work) | %.2f / %.2f |", maxJudgedLoad, r.loadBefore, r.loadAfter)
	p("| others' share of the machine during the wrk runs, median (judged only at ≤ %d%%) | %.0f%% |", maxJudgedOthers, r.othersDuring())
	p("| CPU busy with other work, 2 s sample before / after | %.0f%% / %.0f%% of the machine |", r.busyBefore, r.busyAfter)
	p("| CPU time the host gave to other guests during the run (steal, /proc/stat) | %.1f%% of the machine |", r.stealDuring)
	p("")
	if r.failure != "" {
		p("**The run failed:** `%s`. The figures below are what was measured before.", r.failure)
		p("")
	}
	for _, n := range r.notes {
		p("> **Warning:** %s.", n)
		p("")
	}
	if r.busy() {
		p("> **Not judged: machine busy.** The 1-minute load average was %.2f at the start (judged at ≤ %.1f) and other processes kept a median %.0f%% of the machine busy during the wrk runs (judged at ≤ %d%%); no target below is called met or missed. Run again on a quieter machine.", r.loadBefore, maxJudgedLoad, r.othersDuring(), maxJudgedOthers)
		p("")
	}
	if busy := max(r.busyBefore, r.busyAfter); busy > 10 {
		p("> **Note:** other processes (other developers' tests) kept %.0f%% of this 2-core machine busy around the run; the ratios, measured in alternating rounds, are more trustworthy than the absolute figures.", busy)
		p("")
	}

	b.reportThroughput(p)
	b.reportWS(p)
	b.reportCold(p)
	b.reportCrowd(p)
	b.reportScale(p)

	if r.goBench != "" {
		p("## Per-request cost in caddymodule (Go benchmarks)")
		p("")
		p("`%s` — cookie check (parse the Cookie header, AES-GCM open, JSON decode), policy lookup (Known + image + Allowed), route lookup (LRU hit), all three, the request header hygiene of proxyTo, and the whole handler in process against plain reverse_proxy (no TLS, no log); `Proxy/interleaved` alternates the two request by request and reports their median times and the difference, `extra-p50-ns`, the figure least disturbed by other load.", r.goBenchCmd)
		p("")
		p("```")
		p("%s", r.goBench)
		p("```")
		p("")
	}

	p("## How it was run")
	p("")
	p("```sh")
	p("make bench        # = make build images; apt-get install wrk if missing; go build ./bench/...; bench/out/bin/run")
	var keys []string
	for k := range r.hubEnv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var env []string
	for _, k := range keys {
		env = append(env, k+"="+r.hubEnv[k])
	}
	p("# hubgate (server side: CPU %s, GOMAXPROCS=1; load generators: CPU %s):", serverCPU, clientCPU)
	p("%s GOMAXPROCS=1 taskset -c %s bin/caddy run --config bench/hubgate.Caddyfile --adapter caddyfile", strings.Join(env, " "), serverCPU)
	p("# plain Caddy, in front of the container hubgate started:")
	p("BENCH_UPSTREAM=<container ip>:8888 BENCH_TOKEN=<its HUBGATE_TOKEN> BENCH_HTTPS_PORT=... BENCH_HTTP_PORT=... GOMAXPROCS=1 taskset -c %s bin/caddy run --config bench/Caddyfile --adapter caddyfile", serverCPU)
	if r.scale != nil {
		p("# plain Caddy for the scale spread, its upstream and container secret from each request's headers:")
		p("BENCH_UPSTREAM='{http.request.header.X-Bench-Upstream}' BENCH_TOKEN='{http.request.header.X-Bench-Token}' BENCH_HTTPS_PORT=... BENCH_HTTP_PORT=... GOMAXPROCS=1 taskset -c %s bin/caddy run --config bench/Caddyfile --adapter caddyfile", serverCPU)
	}
	p("# configurable-http-proxy (twice: http, and https with a self-signed certificate), the route added as JupyterHub does:")
	p("NODE_PATH=%s CONFIGPROXY_AUTH_TOKEN=... taskset -c %s %s --ip 127.0.0.1 --port ... --api-ip 127.0.0.1 --api-port ... --log-level warn [--ssl-key ... --ssl-cert ...]", chpNodePath, serverCPU, chpBin)
	p("curl -X POST -H 'Authorization: token ...' -d '{\"target\":\"http://<container ip>:8888\"}' http://127.0.0.1:<api port>/api/routes/user/bench/notebook")
	p("# oauth2-proxy %s (go install %s@%s), htpasswd account, signed in through POST /oauth2/sign_in:", oauth2ProxyVer, oauth2ProxyMod, oauth2ProxyVer)
	p("GOMAXPROCS=1 taskset -c %s oauth2-proxy --http-address=... --https-address=... --upstream=http://<container ip>:8888/ --provider=github --client-id=bench --client-secret=bench --email-domain=* --htpasswd-file=... --cookie-secret=... --cookie-secure=false --pass-basic-auth=false --request-logging=false --auth-logging=false", serverCPU)
	for _, c := range r.commands {
		p("%s", c)
	}
	if r.goBenchCmd != "" {
		p("%s", r.goBenchCmd)
	}
	p("```")
	return w.String()
}
