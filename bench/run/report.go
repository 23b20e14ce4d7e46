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
	busyBefore, busyAfter     float64
	hubEnv                    map[string]string
	commands                  []string
	bodyBytes                 map[string]int
	failure                   string
	notes                     []string

	loadThroughput, loadWS, loadCold, loadCrowd, loadScale float64

	wrk     map[string][]wrkRun
	ws      map[string][]wsRun
	wsModes string

	coldHub                       []time.Duration
	coldBare                      []bareTimes
	coldSpawn                     []time.Duration
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

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
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
	p("| CPU busy with other work, 2 s sample before / after | %.0f%% / %.0f%% of the machine |", r.busyBefore, r.busyAfter)
	p("")
	if r.failure != "" {
		p("**The run failed:** `%s`. The figures below are what was measured before.", r.failure)
		p("")
	}
	for _, n := range r.notes {
		p("> **Warning:** %s.", n)
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
	p("# (c) hubgate:")
	p("%s bin/caddy run --config Caddyfile --adapter caddyfile", strings.Join(env, " "))
	p("# (b) plain Caddy, in front of the container hubgate started:")
	p("BENCH_UPSTREAM=<container ip>:8888 BENCH_TOKEN=<its HUBGATE_TOKEN> BENCH_HTTPS_PORT=... bin/caddy run --config bench/Caddyfile --adapter caddyfile")
	for _, c := range r.commands {
		p("%s", c)
	}
	if r.goBenchCmd != "" {
		p("%s", r.goBenchCmd)
	}
	p("```")
	return w.String()
}

func (b *bench) reportThroughput(p func(string, ...any)) {
	r := &b.res
	if len(r.wrk["c"]) == 0 {
		return
	}
	p("## Throughput: GET whoami (%d-byte JSON), wrk -t%d -c%d -d%s", r.bodyBytes["c"], b.cfg.threads, b.cfg.conns, b.cfg.duration)
	p("")
	p("Same container behind all three; %d alternating rounds (a b c, b c a, c a b, ...) after a %s warm-up of each; medians. Load average at the start: %.2f.", b.cfg.rounds, b.cfg.warmup, r.loadThroughput)
	p("")
	p("| target | req/s | p50 | p90 | p99 | errors | req/s per round | proxy CPU per request | app CPU per request | others' CPU during runs |")
	p("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
	type agg struct{ rps, p50, p90, p99, other, proxyCPU, appCPU float64 }
	meds := map[string]agg{}
	for _, t := range []struct{ key, label string }{
		{"a", "(a) direct, http"}, {"b", "(b) plain Caddy, https"}, {"c", "(c) hubgate, https"},
	} {
		runs := r.wrk[t.key]
		var rps, p50, p90, p99, other, proxyCPU, appCPU []float64
		var errs int64
		var per []string
		for _, x := range runs {
			rps, p50, p90, p99, other = append(rps, x.RPS), append(p50, x.P50), append(p90, x.P90), append(p99, x.P99), append(other, x.Other)
			switch t.key {
			case "b":
				proxyCPU = append(proxyCPU, x.perRequest(x.PlainCPU))
			case "c":
				proxyCPU = append(proxyCPU, x.perRequest(x.HubCPU))
			}
			appCPU = append(appCPU, x.perRequest(x.AppCPU))
			errs += x.errors()
			per = append(per, fmt.Sprintf("%.0f", x.RPS))
		}
		m := agg{median(rps), median(p50), median(p90), median(p99), median(other), median(proxyCPU), median(appCPU)}
		meds[t.key] = m
		proxy := "—"
		if m.proxyCPU > 0 {
			proxy = fmt.Sprintf("%.0f µs", m.proxyCPU)
		}
		p("| %s | %.0f | %s | %s | %s | %d | %s | %s | %.0f µs | %.0f%% |", t.label, m.rps, ms(m.p50), ms(m.p90), ms(m.p99), errs, strings.Join(per, ", "), proxy, m.appCPU, m.other)
	}
	a, bb, c := meds["a"], meds["b"], meds["c"]
	// Per round, b and c ran back to back: their ratio within a round is
	// less disturbed by load that comes and goes than the ratio of medians.
	var rr, rp99 []float64
	for i := range min(len(r.wrk["b"]), len(r.wrk["c"])) {
		rr = append(rr, r.wrk["c"][i].RPS/r.wrk["b"][i].RPS)
		rp99 = append(rp99, r.wrk["c"][i].P99/r.wrk["b"][i].P99)
	}
	var per []string
	for _, x := range rr {
		per = append(per, fmt.Sprintf("%.2f", x))
	}
	p("")
	p("Response bodies: (a) %d, (b) %d, (c) %d bytes (whoami echoes the request headers the app saw).", r.bodyBytes["a"], r.bodyBytes["b"], r.bodyBytes["c"])
	p("")
	p("| ratio | req/s | p50 | p99 | target | |")
	p("|---|---:|---:|---:|---|---|")
	p("| c/b (hubgate / plain Caddy), of the medians | %.3f | %.2f | %.2f | req/s ≥ 0.90, p99 ≤ 1.2 | %s |", c.rps/bb.rps, c.p50/bb.p50, c.p99/bb.p99, verdict(c.rps/bb.rps >= 0.90 && c.p99/bb.p99 <= 1.2))
	p("| c/b, median of the per-round ratios (%s) | %.3f | | %.2f | | %s |", strings.Join(per, ", "), median(rr), median(rp99), verdict(median(rr) >= 0.90 && median(rp99) <= 1.2))
	p("| c/a (hubgate / direct) | %.3f | %.2f | %.2f | | |", c.rps/a.rps, c.p50/a.p50, c.p99/a.p99)
	p("| b/a (plain Caddy / direct) | %.3f | %.2f | %.2f | | |", bb.rps/a.rps, bb.p50/a.p50, bb.p99/a.p99)
	p("")
	p("CPU per request of the proxy process itself (from /proc, over each whole run; less disturbed by other load than req/s): hubgate %.0f µs, plain Caddy %.0f µs, ratio **%.2f** (+%.0f µs per request).", c.proxyCPU, bb.proxyCPU, c.proxyCPU/bb.proxyCPU, c.proxyCPU-bb.proxyCPU)
	p("")
	p("wrk, Caddy, hubgate and the app share the same %s cores, so (a) is the app with a client, not a free upper bound.", r.machine.nproc)
	if len(r.wrk["c"]) > 0 && r.wrk["c"][0].Profiled {
		p("Round 1 of (b) and (c) ran with a CPU profile being taken (BENCH_PPROF=1): bench/out/pprof-b.pb.gz, pprof-c.pb.gz.")
	}
	p("")
}

func (b *bench) reportWS(p func(string, ...any)) {
	r := &b.res
	if len(r.ws["c/seq"]) == 0 {
		return
	}
	p("## Websocket echo round trips")
	p("")
	p("%s; %d alternating rounds, medians. Load average at the start: %.2f.", r.wsModes, b.cfg.wsRounds, r.loadWS)
	p("")
	p("| target | sequential p50 | p99 | msgs/s | concurrent p50 | p99 | msgs/s |")
	p("|---|---:|---:|---:|---:|---:|---:|")
	type agg struct{ p50, p99, rate float64 }
	med := func(k string) agg {
		var p50, p99, rate []float64
		for _, x := range r.ws[k] {
			p50, p99, rate = append(p50, float64(x.p50)), append(p99, float64(x.p99)), append(rate, x.rate)
		}
		return agg{median(p50), median(p99), median(rate)}
	}
	m := map[string]agg{}
	for _, t := range []struct{ key, label string }{
		{"a", "(a) direct, ws"}, {"b", "(b) plain Caddy, wss"}, {"c", "(c) hubgate, wss"},
	} {
		s, c := med(t.key+"/seq"), med(t.key+"/conc")
		m[t.key+"/seq"], m[t.key+"/conc"] = s, c
		p("| %s | %s | %s | %.0f | %s | %s | %.0f |", t.label, dus(time.Duration(s.p50)), dus(time.Duration(s.p99)), s.rate,
			dus(time.Duration(c.p50)), dus(time.Duration(c.p99)), c.rate)
	}
	bs, cs, bc, cc := m["b/seq"], m["c/seq"], m["b/conc"], m["c/conc"]
	p("| **c/b** (round-trip rate; RTT ratio) | %.2f | %.2f | **%.3f** | %.2f | %.2f | **%.3f** |", cs.p50/bs.p50, cs.p99/bs.p99, cs.rate/bs.rate, cc.p50/bc.p50, cc.p99/bc.p99, cc.rate/bc.rate)
	p("")
	p("Target: hubgate's round-trip rate ≥ 0.90× plain Caddy's: sequential %.3f, concurrent %.3f — %s.", cs.rate/bs.rate, cc.rate/bc.rate, verdict(cs.rate/bs.rate >= 0.90 && cc.rate/bc.rate >= 0.90))
	p("")
}

func (b *bench) reportCold(p func(string, ...any)) {
	r := &b.res
	if len(r.coldHub) == 0 || len(r.coldBare) == 0 {
		return
	}
	var bare, create, start, answer []time.Duration
	for _, t := range r.coldBare {
		bare, create, start, answer = append(bare, t.total), append(create, t.create), append(start, t.start), append(answer, t.answer)
	}
	hub, bm := medianDur(r.coldHub), medianDur(bare)
	p("## Cold start: a new user's first request to the app's first byte")
	p("")
	p("%d of each, alternating, after an untimed warm-up of each; every container removed after its run. Load average at the start: %.2f.", len(r.coldHub), r.loadCold)
	p("")
	p("| | median | min | max |")
	p("|---|---:|---:|---:|")
	p("| hubgate: GET /user/<new user>/notebook/whoami (logged in, keep-alive connection) → first byte of the app's 200 | %s | %s | %s |", dms(hub), dms(percentileDur(r.coldHub, 0)), dms(percentileDur(r.coldHub, 100)))
	if len(r.coldSpawn) > 0 {
		p("| … of which hubgate's own spawn (audit log `spawn` duration: volume, create, start, wait until the app answers) | %s | %s | %s |", dms(medianDur(r.coldSpawn)), dms(percentileDur(r.coldSpawn, 0)), dms(percentileDur(r.coldSpawn, 100)))
	}
	p("| bare Docker API: create + start + first answer (same image, env, mount, network; polled every 5 ms) | %s | %s | %s |", dms(bm), dms(percentileDur(bare, 0)), dms(percentileDur(bare, 100)))
	p("| … create / start (+ inspect) / first answer | %s / %s / %s | | |", dms(medianDur(create)), dms(medianDur(start)), dms(medianDur(answer)))
	p("| **hubgate − bare** (medians) | **%+.0f ms** | | |", float64(hub-bm)/float64(time.Millisecond))
	p("")
	p("Target: ≤ +150 ms — %s. hubgate answered %d times 503 \"starting\" and %d times otherwise before the 200s.", verdict(hub-bm <= 150*time.Millisecond), r.coldHubRetries, r.coldHubErrors)
	p("")
	var all []string
	for i := range r.coldHub {
		all = append(all, fmt.Sprintf("%s/%s", dms(r.coldHub[i]), dms(r.coldBare[i].total)))
	}
	p("Each pair (hubgate/bare): %s.", strings.Join(all, ", "))
	p("")
}

func (b *bench) reportCrowd(p func(string, ...any)) {
	c := b.res.crowd
	if c == nil {
		return
	}
	p("## %d new users whose first requests arrive together", c.users)
	p("")
	p("All logged in first; then every first request at the same moment, each user on their own connection, as an API client (a 503 \"starting\" with Retry-After is asked again after 100 ms). Load average at the start: %.2f.", b.res.loadCrowd)
	p("")
	p("| served | errors | 503 \"starting\" answers | time to served, median | last served | containers running after |")
	p("|---:|---:|---:|---:|---:|---:|")
	p("| %d / %d | %d | %d | %s | %s | %d |", c.served, c.users, c.errors, c.retries, dms(c.p50), dms(c.max), c.containers)
	p("")
	p("Target: all served, none errors — %s.", verdict(c.served == c.users && c.errors == 0))
	for _, f := range c.failures {
		p("- %s", f)
	}
	p("")
}

func (b *bench) reportScale(p func(string, ...any)) {
	s := b.res.scale
	if s == nil {
		if !b.cfg.scale {
			p("## %d running containers", b.cfg.scaleN)
			p("")
			p("Not run by default (several minutes): `BENCH_SCALE=1 make bench`.")
			p("")
		}
		return
	}
	p("## %d running containers", s.n)
	p("")
	p("Started through hubgate (20 users at a time) in %s; %d containers of the deployment running. Load average at the start: %.2f.", s.startAll.Round(time.Second), s.running, b.res.loadScale)
	p("")
	if len(s.rps1) > 0 && len(s.rpsN) > 0 {
		r1, rn := median(s.rps1), median(s.rpsN)
		p("| wrk through hubgate (same Lua script, pre-formatted requests) | req/s | p99 |")
		p("|---|---:|---:|")
		p("| 1 user's server | %.0f | %s |", r1, ms(median(s.p99s1)))
		p("| %d users' servers, round robin | %.0f | %s |", s.n, rn, ms(median(s.p99N)))
		p("| ratio | **%.3f** | %.2f |", rn/r1, median(s.p99N)/median(s.p99s1))
		p("")
		p("Target: within 10%% of the 1-container figure — %s.", verdict(rn/r1 >= 0.90))
		p("")
		if len(s.hubCPU1) > 0 && len(s.hubCPUN) > 0 {
			p("hubgate's own CPU per request: %.0f µs with 1 server, %.0f µs with %d (ratio %.2f).", median(s.hubCPU1), median(s.hubCPUN), s.n, median(s.hubCPUN)/median(s.hubCPU1))
			p("")
		}
		if len(s.direct1) > 0 && len(s.directN) > 0 {
			d1, dn := median(s.direct1), median(s.directN)
			p("Control without any gateway (a Go load generator, %d workers sharing one keep-alive pool, straight to the containers over http): 1 container %.0f req/s, %d containers round robin %.0f req/s, ratio **%.3f**. Spreading requests over %d app processes on %s cores costs the app side itself that much; through hubgate the gateway, not the apps, sets the pace, so the drop is smaller. hubgate's own part of it is the rise of its CPU per request above.",
				b.cfg.conns, d1, s.n, dn, dn/d1, s.n, b.res.machine.nproc)
			p("")
		}
	}
	if s.restartAll > 0 {
		p("Gateway restart (SIGTERM, then a new process with the same storage): from the new process's start to all %d users answered 200 through it: **%s** (health endpoint answered after %s; %d non-200 answers on the way; %d spawns logged by the new process). Target: within 2 s — %s.",
			s.n, dms(s.restartAll), dms(s.healthReady), s.restartErrs, s.spawnsAfter, verdict(s.restartAll <= 2*time.Second))
		p("")
	}
}
