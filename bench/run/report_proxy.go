package main

import (
	"fmt"
	"strings"
	"time"
)

// cpuTarget is the target: hubgate's proxy CPU per request within
// 5% of plain Caddy's, in every workload and for websocket round trips.
const cpuTarget = 1.05

// agg is the medians of one target's runs in one workload.
type agg struct {
	rps, p50, p99, proxyCPU, appCPU, other float64
	n                                      int
}

func aggregate(runs []wrkRun) agg {
	var rps, p50, p99, proxy, app, other []float64
	for _, x := range runs {
		rps, p50, p99 = append(rps, x.RPS), append(p50, x.P50), append(p99, x.P99)
		proxy, app, other = append(proxy, x.perRequest(x.ProxyCPU)), append(app, x.perRequest(x.AppCPU)), append(other, x.Other)
	}
	return agg{median(rps), median(p50), median(p99), median(proxy), median(app), median(other), len(runs)}
}

// roundRatios returns, round by round, hubgate's req/s and CPU per request
// over plain Caddy's (the two ran back to back in each round).
func roundRatios(byKey map[string][]wrkRun) (rps, cpu []float64) {
	h, c := byKey["hubgate"], byKey["caddy"]
	return pairRatios(h, c, func(x wrkRun) float64 { return x.RPS }),
		pairRatios(h, c, func(x wrkRun) float64 { return x.perRequest(x.ProxyCPU) })
}

// pairRatios returns f(hub[i]) / f(caddy[i]) for each round i where
// Caddy's figure is not zero.
func pairRatios[T any](hub, caddy []T, f func(T) float64) []float64 {
	var out []float64
	for i := range min(len(hub), len(caddy)) {
		if c := f(caddy[i]); c > 0 {
			out = append(out, f(hub[i])/c)
		}
	}
	return out
}

func joinf(xs []float64, format string) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprintf(format, x))
	}
	return strings.Join(s, ", ")
}

func (b *bench) reportThroughput(p func(string, ...any)) {
	r := &b.res
	if len(r.wrk) == 0 {
		return
	}
	p("## Proxy path: GET of a file the app serves, through each proxy to the same container")
	p("")
	p("Server side (every proxy and the app container) pinned to CPU %s, Go servers with GOMAXPROCS=1; wrk pinned to CPU %s. "+
		"No access log anywhere. %d alternating rounds of %s per target and workload (the order of the others rotates; plain Caddy and hubgate always run back to back, each first in every other round), after a %s warm-up of each; medians. "+
		"Cells: req/s · proxy CPU per request (utime+stime of the proxy process from /proc over the run ÷ requests). Load average at the start: %.2f.",
		serverCPU, clientCPU, b.cfg.rounds, b.cfg.duration, b.cfg.warmup, r.loadThroughput)
	p("")
	var present []string
	for _, k := range targetOrder {
		for _, byKey := range r.wrk {
			if len(byKey[k]) > 0 {
				present = append(present, k)
				break
			}
		}
	}
	head := "| workload |"
	sep := "|---|"
	for _, k := range present {
		head += " " + targetLabels[k] + " |"
		sep += "---:|"
	}
	paired := len(r.paired) > 0
	if paired {
		p("%s hubgate ÷ Caddy, one after the other: req/s, CPU per request (median of per-round ratios) | at the same time: Caddy · hubgate CPU per request, hubgate ÷ Caddy (median of per-round ratios) | CPU ÷ Caddy ≤ %.2f (at the same time) |", head, cpuTarget)
		p("%s---|---|---|", sep)
	} else {
		p("%s hubgate ÷ Caddy: req/s, CPU per request (median of per-round ratios) | CPU ÷ Caddy ≤ %.2f |", head, cpuTarget)
		p("%s---|---|", sep)
	}
	allMet := true
	for _, c := range b.cells() {
		byKey := r.wrk[c.key()]
		if byKey == nil {
			continue
		}
		row := "| " + c.key() + " |"
		for _, k := range present {
			if len(byKey[k]) == 0 {
				row += " — |"
				continue
			}
			a := aggregate(byKey[k])
			if k == "direct" {
				row += fmt.Sprintf(" %.0f · app %.0f µs |", a.rps, a.appCPU)
			} else {
				row += fmt.Sprintf(" %.0f · %.0f µs |", a.rps, a.proxyCPU)
			}
		}
		rr, rc := roundRatios(byKey)
		ok := len(rc) > 0 && median(rc) <= cpuTarget
		if !paired {
			row += fmt.Sprintf(" %.2f, **%.2f** (rounds: %s) |", median(rr), median(rc), joinf(rc, "%.2f"))
		} else {
			row += fmt.Sprintf(" %.2f, %.2f (rounds: %s) |", median(rr), median(rc), joinf(rc, "%.2f"))
			both := r.paired[c.key()]
			pr, pc := roundRatios(both)
			ok = len(pc) > 0 && median(pc) <= cpuTarget
			row += fmt.Sprintf(" %.0f · %.0f µs, **%.2f** (rounds: %s; req/s %.2f) |", aggregate(both["caddy"]).proxyCPU, aggregate(both["hubgate"]).proxyCPU, median(pc), joinf(pc, "%.2f"), median(pr))
		}
		allMet = allMet && ok
		row += fmt.Sprintf(" %s |", b.shortVerdict(ok))
		p("%s", row)
	}
	p("")
	p("All workloads: %s.", b.verdict(allMet))
	p("")
	if paired {
		p("In every round and workload plain Caddy and hubgate also ran at the same time, for %s, one wrk each (both on CPU %s): the two proxies then share the server CPU and the app, and whatever the machine's speed does during the run (other guests on the host) reaches both alike. One after the other, the same target's CPU per request moves by tens of percent from one run to the next, so the ratio of two runs seconds apart does too (the rounds above); at the same time each proxy's CPU per request is still its own CPU over its own requests, and that ratio is the verdict. Sharing the CPU costs both some cache misses, which a slower proxy would pay as well: compare the absolute figures with those one after the other. The req/s of the pair is how the scheduler split the one CPU between them (at 64 connections not evenly), not a throughput: that is the req/s one after the other.", b.cfg.duration, clientCPU)
		p("")
	}
	p("Latency (median p50 / p99 of the rounds; over direct: the p50 a proxy adds):")
	p("")
	head = "| workload |"
	sep = "|---|"
	for _, k := range present {
		head += " " + targetLabels[k] + " |"
		sep += "---:|"
	}
	p("%s", head)
	p("%s", sep)
	for _, c := range b.cells() {
		byKey := r.wrk[c.key()]
		if byKey == nil {
			continue
		}
		direct := aggregate(byKey["direct"])
		row := "| " + c.key() + " |"
		for _, k := range present {
			if len(byKey[k]) == 0 {
				row += " — |"
				continue
			}
			a := aggregate(byKey[k])
			cellText := fmt.Sprintf(" %s / %s", ms(a.p50), ms(a.p99))
			if k != "direct" && direct.n > 0 {
				cellText += " (+" + ms(a.p50-direct.p50) + ")"
			}
			row += cellText + " |"
		}
		p("%s", row)
	}
	p("")
	var other []float64
	for _, byKey := range r.wrk {
		for _, runs := range byKey {
			for _, x := range runs {
				other = append(other, x.Other)
			}
		}
	}
	p("Other processes kept a median %.0f%% of the machine busy during the runs (max %.0f%%). Both CPUs are shared with them: the CPU-per-request figures, taken from the proxies' own accounting, are less disturbed by that than req/s.", median(other), maxOf(other))
	p("")
	p("configurable-http-proxy and oauth2-proxy get the container token from the client (they add no credentials of their own); plain Caddy and hubgate add it (`header_up Authorization`, hubgate's route). oauth2-proxy and hubgate check a cookie session made by their own login forms.")
	p("")
	for _, s := range r.profiled {
		p("- Profiled (BENCH_PPROF=1): %s.", s)
	}
	if len(r.profiled) > 0 {
		p("")
	}
}

func maxOf(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func (b *bench) reportWS(p func(string, ...any)) {
	r := &b.res
	if len(r.ws) == 0 {
		return
	}
	p("## Websocket echo round trips")
	p("")
	p("%s; %d alternating rounds, medians; wsrtt pinned to CPU %s. Proxy CPU per round trip includes the dials and warm-up round trips (the same for every proxy). Load average at the start: %.2f.", r.wsModes, b.cfg.wsRounds, clientCPU, r.loadWS)
	p("")
	p("| target | sequential p50 | p99 | round trips/s | proxy CPU per round trip | concurrent p50 | p99 | round trips/s | proxy CPU per round trip |")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	type wagg struct{ p50, p99, rate, cpu float64 }
	med := func(k string) wagg {
		var p50, p99, rate, cpu []float64
		for _, x := range r.ws[k] {
			p50, p99, rate, cpu = append(p50, float64(x.p50)), append(p99, float64(x.p99)), append(rate, x.rate), append(cpu, x.proxyCPU)
		}
		return wagg{median(p50), median(p99), median(rate), median(cpu)}
	}
	cpuText := func(v float64) string {
		if v == 0 {
			return "—"
		}
		return fmt.Sprintf("%.0f µs", v)
	}
	for _, k := range targetOrder {
		if len(r.ws[k+"/seq"]) == 0 {
			continue
		}
		s, c := med(k+"/seq"), med(k+"/conc")
		p("| %s | %s | %s | %.0f | %s | %s | %s | %.0f | %s |", targetLabels[k], dus(time.Duration(s.p50)), dus(time.Duration(s.p99)), s.rate, cpuText(s.cpu),
			dus(time.Duration(c.p50)), dus(time.Duration(c.p99)), c.rate, cpuText(c.cpu))
	}
	if len(r.ws["hubgate/seq"]) == 0 || len(r.ws["caddy/seq"]) == 0 {
		p("")
		return
	}
	hs, cs, hc, cc := med("hubgate/seq"), med("caddy/seq"), med("hubgate/conc"), med("caddy/conc")
	p("| **hubgate ÷ Caddy** | %.2f | %.2f | %.3f | **%.2f** | %.2f | %.2f | %.3f | **%.2f** |", hs.p50/cs.p50, hs.p99/cs.p99, hs.rate/cs.rate, hs.cpu/cs.cpu,
		hc.p50/cc.p50, hc.p99/cc.p99, hc.rate/cc.rate, hc.cpu/cc.cpu)
	ok := hs.cpu/cs.cpu <= cpuTarget && hc.cpu/cc.cpu <= cpuTarget && hs.rate/cs.rate >= 1/cpuTarget && hc.rate/cc.rate >= 1/cpuTarget
	if len(r.wsPaired) > 0 {
		ratios := func(mode string, f func(wsRun) float64) []float64 {
			return pairRatios(r.wsPaired["hubgate/"+mode], r.wsPaired["caddy/"+mode], f)
		}
		p50 := func(x wsRun) float64 { return float64(x.p50) }
		p99 := func(x wsRun) float64 { return float64(x.p99) }
		rate := func(x wsRun) float64 { return x.rate }
		cpu := func(x wsRun) float64 { return x.proxyCPU }
		sc, ccpu := ratios("seq", cpu), ratios("conc", cpu)
		sr, cr := ratios("seq", rate), ratios("conc", rate)
		p("| **hubgate ÷ Caddy at the same time** (median of per-round ratios) | %.2f | %.2f | %.3f | **%.2f** | %.2f | %.2f | %.3f | **%.2f** |",
			median(ratios("seq", p50)), median(ratios("seq", p99)), median(sr), median(sc),
			median(ratios("conc", p50)), median(ratios("conc", p99)), median(cr), median(ccpu))
		p("")
		p("At the same time (as for requests above, the verdict): CPU per round trip ratios by round, sequential %s, concurrent %s; Caddy's and hubgate's medians %.0f · %.0f µs sequential, %.0f · %.0f µs concurrent.",
			joinf(sc, "%.2f"), joinf(ccpu, "%.2f"), median(pluck(r.wsPaired["caddy/seq"], cpu)), median(pluck(r.wsPaired["hubgate/seq"], cpu)),
			median(pluck(r.wsPaired["caddy/conc"], cpu)), median(pluck(r.wsPaired["hubgate/conc"], cpu)))
		ok = len(sc) > 0 && len(ccpu) > 0 && median(sc) <= cpuTarget && median(ccpu) <= cpuTarget && median(sr) >= 1/cpuTarget && median(cr) >= 1/cpuTarget
	}
	p("")
	p("Target: hubgate's websocket round trips within 5%% of plain Caddy's (CPU per round trip ≤ %.2f×, rate ≥ %.2f×) — %s.", cpuTarget, 1/cpuTarget, b.verdict(ok))
	p("")
}

// pluck maps runs to one figure each.
func pluck(runs []wsRun, f func(wsRun) float64) []float64 {
	out := make([]float64, 0, len(runs))
	for _, x := range runs {
		out = append(out, f(x))
	}
	return out
}
