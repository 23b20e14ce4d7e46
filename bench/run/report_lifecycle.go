package main

import (
	"fmt"
	"strings"
	"time"
)

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
	if b.cfg.coldPaired {
		p("%d of each, each hubgate start and bare start at the same time (the two notebooks share the machine, so each takes longer than alone, and the host's speed, which moves these seconds of Python by a third from one start to the next, reaches both alike), after an untimed warm-up pair; every container removed after its run. The one that reaches the engine second waits behind parts of the other's create and start, so the two take turns going %s ahead (neither clock runs while its side waits). hubgate runs on every CPU for these starts, as the bare Docker client does (on the server CPU alone its probes could wait behind the starting notebooks). The verdict is the median of the pairs' differences. Load average at the start: %.2f.", len(r.coldHub), b.cfg.coldLead, r.loadCold)
	} else {
		p("%d of each, alternating, after an untimed warm-up of each; every container removed after its run. Load average at the start: %.2f.", len(r.coldHub), r.loadCold)
	}
	p("")
	server, image, _, _ := b.coldServer()
	p("Image: `%s` (server %q).", image, server)
	p("")
	p("| | median | min | max |")
	p("|---|---:|---:|---:|")
	p("| hubgate: GET /user/<new user>/%s/%s (logged in, keep-alive connection) → first byte of the app's 200 | %s | %s | %s |", server, b.coldRest(), dms(hub), dms(percentileDur(r.coldHub, 0)), dms(percentileDur(r.coldHub, 100)))
	if len(r.coldSpawn) > 0 {
		p("| … of which hubgate's own spawn (audit log `spawn` duration: volume, create, start, wait until the app answers) | %s | %s | %s |", dms(medianDur(r.coldSpawn)), dms(percentileDur(r.coldSpawn, 0)), dms(percentileDur(r.coldSpawn, 100)))
	}
	if st := r.coldSteps; len(st) > 0 {
		// The step names are spawner.StepVolume, StepCreate, StepStart
		// and hub.StepWaiting (the bench reads hubgate from outside).
		step := func(name string) string {
			if len(st[name]) == 0 {
				return "–"
			}
			return dms(medianDur(st[name]))
		}
		p("| … its steps (audit log `steps`, medians): volume, image and network / create / start (+ inspect) / until the app answers | %s / %s / %s / %s | | |",
			step("creating the home volume"), step("creating the container"), step("starting the container"), step("waiting for the app to answer"))
	}
	p("| bare Docker API: create + start + first 200 of the same path (same image, env, mount, network, and the capabilities, security options and limits of hubgate's warm-up container; polled every 5 ms) | %s | %s | %s |", dms(bm), dms(percentileDur(bare, 0)), dms(percentileDur(bare, 100)))
	p("| … create / start (+ inspect) / first answer | %s / %s / %s | | |", dms(medianDur(create)), dms(medianDur(start)), dms(medianDur(answer)))
	p("| **hubgate − bare** (medians) | **%+.0f ms** | | |", float64(hub-bm)/float64(time.Millisecond))
	extra := hub - bm
	if b.cfg.coldPaired {
		var diffs []time.Duration
		for i := range min(len(r.coldHub), len(bare)) {
			diffs = append(diffs, r.coldHub[i]-bare[i])
		}
		extra = medianDur(diffs)
		p("| **hubgate − bare, pair by pair** (median of the differences) | **%+.0f ms** | %+.0f ms | %+.0f ms |", float64(extra)/float64(time.Millisecond),
			float64(percentileDur(diffs, 0))/float64(time.Millisecond), float64(percentileDur(diffs, 100))/float64(time.Millisecond))
		var hubFirst, bareFirst []time.Duration
		for i, d := range diffs {
			// diffs[i] is of pair i+1 (pair 0 is the untimed warm-up).
			if coldHubLeads(i + 1) {
				hubFirst = append(hubFirst, d)
			} else {
				bareFirst = append(bareFirst, d)
			}
		}
		msd := func(d []time.Duration) string {
			if len(d) == 0 {
				return "–"
			}
			return fmt.Sprintf("%+.0f ms", float64(medianDur(d))/float64(time.Millisecond))
		}
		p("| … in the pairs where hubgate went %s ahead (%d) / where bare Docker did (%d) | %s / %s | | |", b.cfg.coldLead, len(hubFirst), len(bareFirst), msd(hubFirst), msd(bareFirst))
	}
	p("")
	p("Target: ≤ +50 ms — %s. hubgate answered %d times 503 \"starting\" and %d times otherwise before the 200s.", b.verdictAt(extra <= 50*time.Millisecond, r.loadCold), r.coldHubRetries, r.coldHubErrors)
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
	p("Target: all served, none errors — %s.", b.verdict(c.served == c.users && c.errors == 0))
	for _, f := range c.failures {
		p("- %s", f)
	}
	p("")
}

func (b *bench) reportScale(p func(string, ...any)) {
	s := b.res.scale
	if s == nil {
		if !b.cfg.scale {
			p("## Many running servers")
			p("")
			p("Not run (BENCH_SCALE=0): `make bench` runs it by default (BENCH_SCALE_N=%d servers, BENCH_SCALE_WS=%d websockets).", b.cfg.scaleN, b.cfg.scaleWS)
			p("")
		}
		return
	}
	p("## %d running servers", s.n)
	p("")
	p("Load average at the start: %.2f.", b.res.loadScale)
	if s.n < s.asked {
		p("BENCH_SCALE_N=%d asked, **%d** run: sized by %s.", s.asked, s.n, s.sized)
	}
	p("")
	p("| | |")
	p("|---|---:|")
	p("| resident memory of one running test app and its containerd shim (mean of the first %d; RSS counts the shim's shared binary in each) | %.1f MB |", s.firstBatch, s.perContainerMB)
	p("| MemAvailable's fall per server over the first %d (app, shim, engine and kernel: what sizes the run) | %.1f MB |", s.firstBatch, s.perServerAvailMB)
	p("| first %d started through hubgate, 20 users at a time | %s |", s.firstBatch, dms(s.firstBatchTime))
	p("| all %d started | %s (%d containers of the deployment running) |", s.n, s.startAll.Round(time.Second), s.running)
	if s.restartAll > 0 {
		p("| gateway restart (SIGTERM, a new process, the same storage) → health answers | %s |", dms(s.healthReady))
		p("| gateway restart → all %d users answered 200 through it (32 at a time) | **%s** (%d non-200 answers on the way; %d spawns logged by the new process) |", s.n, dms(s.restartAll), s.restartErrs, s.spawnsAfter)
	}
	if s.heapN > 0 {
		p("| hubgate live heap after GC: fresh process → all %d routes and sessions known | %.1f → %.1f MB: **%.1f KB per route** (with its session) |", s.n, s.heap0, s.heapN, (s.heapN-s.heap0)*1024/float64(s.n))
		p("| hubgate RSS: fresh → all routes | %.1f → %.1f MB |", s.rss0, s.rssN)
	}
	if s.ws > 0 {
		p("| %d idle websockets held open through hubgate: live heap / RSS | %.1f / %.1f MB: **%.1f KB heap, %.1f KB RSS per websocket** |", s.ws, s.heapWS, s.rssWS, (s.heapWS-s.heapN)*1024/float64(s.ws), (s.rssWS-s.rssN)*1024/float64(s.ws))
		if s.plainHeapWS > 0 {
			p("| the same %d idle websockets through plain Caddy (all to one app): heap %.1f → %.1f MB, RSS %.1f → %.1f MB | **%.1f KB heap, %.1f KB RSS per websocket** |", s.ws, s.plainHeap0, s.plainHeapWS, s.plainRSS0, s.plainRSSWS,
				(s.plainHeapWS-s.plainHeap0)*1024/float64(s.ws), (s.plainRSSWS-s.plainRSS0)*1024/float64(s.ws))
		}
	}
	if s.wsErr != "" {
		p("| idle websockets | failed: %s |", s.wsErr)
	}
	p("")
	if h, last := s.hub, len(s.hub)-1; last > 0 && len(h[0].cpu) > 0 && len(h[last].cpu) > 0 {
		c := s.caddy
		haveCaddy := len(c) == len(h) && len(c[0].cpu) > 0 && len(c[last].cpu) > 0
		p("| wrk -c64, plain http (same Lua script, pre-formatted requests) | hubgate req/s | p99 | CPU per request | plain Caddy req/s | p99 | CPU per request | hubgate ÷ Caddy, CPU per request |")
		p("|---|---:|---:|---:|---:|---:|---:|---:|")
		for i, k := range s.sizes {
			label := "1 user's server"
			if k > 1 {
				label = fmt.Sprintf("%d users' servers, round robin", k)
			}
			if haveCaddy && len(c[i].cpu) > 0 {
				p("| %s | %.0f | %s | %.0f µs | %.0f | %s | %.0f µs | %.2f |", label, median(h[i].rps), ms(median(h[i].p99)), median(h[i].cpu),
					median(c[i].rps), ms(median(c[i].p99)), median(c[i].cpu), median(h[i].cpu)/median(c[i].cpu))
			} else {
				p("| %s | %.0f | %s | %.0f µs | | | | |", label, median(h[i].rps), ms(median(h[i].p99)), median(h[i].cpu))
			}
		}
		hubSpread := median(h[last].cpu) / median(h[0].cpu)
		// growth is the CPU per request at all n over the largest spread
		// below it (100 servers by default: 64 connections keep fewer
		// than one request in flight per app there too): what the
		// number of routes itself costs.
		ref := last - 1
		growth := func(r []spreadRuns) float64 { return median(r[last].cpu) / median(r[ref].cpu) }
		// pacedRows: one server at the rate of the spread over all n, and
		// the spread over it (the cost of the number of servers alone).
		paced := len(s.hubPaced.cpu) > 0
		pacedRows := func(withCaddy bool) {
			if !paced {
				return
			}
			hp, cp := s.hubPaced, s.caddyPaced
			withCaddy = withCaddy && len(cp.cpu) > 0
			hubPace := paceFor(median(h[last].rps))
			label := fmt.Sprintf("1 user's server at the %d-server rate (each connection waits %d ms after each response", s.n, hubPace)
			if withCaddy {
				if caddyPace := paceFor(median(c[last].rps)); caddyPace != hubPace {
					label += fmt.Sprintf("; Caddy %d ms", caddyPace)
				}
			}
			label += ")"
			if withCaddy {
				p("| %s | %.0f | %s | %.0f µs | %.0f | %s | %.0f µs | %.2f |", label, median(hp.rps), ms(median(hp.p99)), median(hp.cpu),
					median(cp.rps), ms(median(cp.p99)), median(cp.cpu), median(hp.cpu)/median(cp.cpu))
				p("| %d ÷ one at the same rate | %.3f | | **%.2f** | %.3f | | **%.2f** | |", s.n, median(h[last].rps)/median(hp.rps), median(h[last].cpu)/median(hp.cpu),
					median(c[last].rps)/median(cp.rps), median(c[last].cpu)/median(cp.cpu))
			} else {
				p("| %s | %.0f | %s | %.0f µs | | | | |", label, median(hp.rps), ms(median(hp.p99)), median(hp.cpu))
				p("| %d ÷ one at the same rate | %.3f | | **%.2f** | | | | |", s.n, median(h[last].rps)/median(hp.rps), median(h[last].cpu)/median(hp.cpu))
			}
		}
		pacedNote := func() {
			if !paced {
				return
			}
			p("At the rate the spread reached, one server costs hubgate %.0f µs per request (%.0f µs unpaced): spread over all %d ÷ one at the same rate is %.2f. What is left of the rise once the rate is the same is what the number of servers costs (a different sleeping app's socket written and woken for every request, cold caches); the rest is the rate (a proxy that idles between requests wakes for each one).",
				median(s.hubPaced.cpu), median(h[0].cpu), s.n, median(h[last].cpu)/median(s.hubPaced.cpu))
		}
		if haveCaddy {
			caddySpread := median(c[last].cpu) / median(c[0].cpu)
			p("| %d ÷ one | %.3f | %.2f | **%.2f** | %.3f | %.2f | **%.2f** | |", s.n, median(h[last].rps)/median(h[0].rps), median(h[last].p99)/median(h[0].p99), hubSpread,
				median(c[last].rps)/median(c[0].rps), median(c[last].p99)/median(c[0].p99), caddySpread)
			if last > 1 {
				p("| %d ÷ %d | %.3f | %.2f | **%.2f** | %.3f | %.2f | **%.2f** | |", s.n, s.sizes[ref], median(h[last].rps)/median(h[ref].rps), median(h[last].p99)/median(h[ref].p99), growth(h),
					median(c[last].rps)/median(c[ref].rps), median(c[last].p99)/median(c[ref].p99), growth(c))
			}
			pacedRows(true)
			p("")
			p("Target: hubgate's CPU per request spread over all servers within 10%% of one server's — %s (%.2f). Plain Caddy, whose upstream and container secret come from request headers through the same per-request dial placeholder as hubgate's proxy, spreads at %.2f in the same run: the rise is the machine's (a different sleeping app woken for every request, its process on the server CPU; bench/PROFILE.md), and hubgate's spread ÷ Caddy's is %.2f (≤ 1.10 %s).",
				b.verdict(hubSpread <= 1.10), hubSpread, caddySpread, hubSpread/caddySpread, b.verdict(hubSpread/caddySpread <= 1.10))
			if last > 1 {
				p("From %d servers to %d (64 connections keep fewer than one request in flight per app at both) hubgate's CPU per request grows %.2f× and plain Caddy's %.2f×: what the number of routes itself costs (≤ 1.10 %s).",
					s.sizes[ref], s.n, growth(h), growth(c), b.verdict(growth(h) <= 1.10))
			}
		} else {
			p("| %d ÷ one | %.3f | %.2f | **%.2f** | | | | |", s.n, median(h[last].rps)/median(h[0].rps), median(h[last].p99)/median(h[0].p99), hubSpread)
			pacedRows(false)
			p("")
			p("Target: hubgate's CPU per request spread over all servers within 10%% of one server's — %s (%.2f). Plain Caddy's spread was not measured: %s.", b.verdict(hubSpread <= 1.10), hubSpread, s.caddyErr)
			if last > 1 {
				p("From %d servers to %d hubgate's CPU per request grows %.2f× (≤ 1.10 %s).", s.sizes[ref], s.n, growth(h), b.verdict(growth(h) <= 1.10))
			}
		}
		pacedNote()
		p("")
		for _, e := range s.spreadErrs {
			p("- Failed requests (fewer than 1 in 1,000, which would fail the run): %s.", e)
		}
		if len(s.spreadErrs) > 0 {
			p("")
		}
	}
}
