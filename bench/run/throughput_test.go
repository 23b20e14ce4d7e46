package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRoundOrder: every target once per round; plain Caddy and hubgate
// back to back, each first in every other round; the others rotate, and
// the pair's place among them moves.
func TestRoundOrder(t *testing.T) {
	var ts []target
	for _, k := range []string{"direct", "caddy", "chp", "o2p", "hubgate"} {
		ts = append(ts, target{key: k})
	}
	places := map[int]bool{}
	for round := range 6 {
		var keys []string
		for _, t := range roundOrder(ts, round, round) {
			keys = append(keys, t.key)
		}
		sorted := slices.Sorted(slices.Values(keys))
		if !slices.Equal(sorted, []string{"caddy", "chp", "direct", "hubgate", "o2p"}) {
			t.Fatalf("round %d: %v, want each target once", round, keys)
		}
		c, h := slices.Index(keys, "caddy"), slices.Index(keys, "hubgate")
		want := c + 1
		if round%2 == 1 {
			want = c - 1
		}
		if h != want {
			t.Errorf("round %d: %v, want caddy and hubgate back to back, %s first", round, keys, map[bool]string{true: "caddy", false: "hubgate"}[round%2 == 0])
		}
		places[min(c, h)] = true
	}
	if len(places) < 3 {
		t.Errorf("the pair stood at %v over 6 rounds, want a rotating place", places)
	}
	// Without plain Caddy and hubgate the others still all run.
	if got := roundOrder(ts[2:4], 1, 1); len(got) != 2 {
		t.Errorf("two others alone: %d targets", len(got))
	}
}

// TestPairOf: the pair run at the same time is plain Caddy and hubgate,
// whichever their place among the targets, started in swapped order every
// other round; without one of them there is no pair.
func TestPairOf(t *testing.T) {
	var ts []target
	for _, k := range []string{"hubgate", "direct", "chp", "caddy"} {
		ts = append(ts, target{key: k})
	}
	for round, want := range [][2]string{{"caddy", "hubgate"}, {"hubgate", "caddy"}, {"caddy", "hubgate"}} {
		pair, ok := pairOf(ts, round)
		if !ok || pair[0].key != want[0] || pair[1].key != want[1] {
			t.Errorf("round %d: %s, %s (ok %t), want %s, %s", round, pair[0].key, pair[1].key, ok, want[0], want[1])
		}
	}
	if _, ok := pairOf(ts[:3], 0); ok {
		t.Error("no plain Caddy among the targets, yet a pair")
	}
}

// TestPairedVerdict: with runs at the same time, the workload's verdict is
// their ratio, not the noisier one of the runs one after the other: a
// cell whose paired ratio is 1.10 is missed even though hubgate looked
// cheaper alone, and one at 1.00 is met even though it looked dearer.
func TestPairedVerdict(t *testing.T) {
	run := func(rps, cpuUS float64) wrkRun {
		return wrkRun{Requests: int64(rps * 8), DurationUS: 8e6, RPS: rps, ProxyCPU: rps * 8 * cpuUS / 1e6}
	}
	b := &bench{cfg: config{connSet: []int{1, 64}}}
	x1, x64 := cell{false, 100, 1}, cell{false, 100, 64}
	b.res.wrk = map[string]map[string][]wrkRun{
		x1.key():  {"caddy": {run(1000, 100)}, "hubgate": {run(1000, 90)}},
		x64.key(): {"caddy": {run(1000, 100)}, "hubgate": {run(1000, 130)}},
	}
	b.res.paired = map[string]map[string][]wrkRun{
		x1.key():  {"caddy": {run(500, 100)}, "hubgate": {run(500, 110)}},
		x64.key(): {"caddy": {run(500, 100)}, "hubgate": {run(500, 100)}},
	}
	out := report(b.reportThroughput)
	row := func(k string) string {
		for _, l := range out {
			if strings.HasPrefix(l, "| "+k+" |") {
				return l
			}
		}
		t.Fatalf("no row for %s in:\n%s", k, strings.Join(out, "\n"))
		return ""
	}
	if r := row(x1.key()); !strings.Contains(r, "**1.10**") || !strings.HasSuffix(r, "| **missed** |") {
		t.Errorf("paired 1.10, alone 0.90: %s", r)
	}
	if r := row(x64.key()); !strings.Contains(r, "**1.00**") || !strings.HasSuffix(r, "| **met** |") {
		t.Errorf("paired 1.00, alone 1.30: %s", r)
	}
}

// TestSpreadSizes: the spread runs cover one server, the sizes asked
// that lie below n (in rising order, bad entries dropped), and all n.
func TestSpreadSizes(t *testing.T) {
	for _, c := range []struct {
		n       int
		between string
		want    []int
	}{
		{1000, "10,100", []int{1, 10, 100, 1000}},
		{50, "10,100", []int{1, 10, 50}},
		{10, "10,100", []int{1, 10}},
		{1000, "", []int{1, 1000}},
		{1000, "100, 10, x, 0, 1000, 300", []int{1, 100, 300, 1000}},
		{1, "10", []int{1}},
	} {
		if got := spreadSizes(c.n, c.between); !slices.Equal(got, c.want) {
			t.Errorf("spreadSizes(%d, %q) = %v, want %v", c.n, c.between, got, c.want)
		}
	}
}

// TestColdPairsByLead: the paired cold start's verdict is the median of
// the pair differences, and the pairs are split by who went first as
// coldStart ordered them (hubgate in pairs 1, 3, 5; pair 0 is the
// untimed warm-up and not in the results).
func TestColdPairsByLead(t *testing.T) {
	if !coldHubLeads(1) || coldHubLeads(2) {
		t.Fatal("hubgate should go first in odd pairs, bare Docker in even ones")
	}
	ms := func(v int) time.Duration { return time.Duration(v) * time.Millisecond }
	b := &bench{cfg: config{coldPaired: true, coldLead: 50 * time.Millisecond}}
	for _, d := range []int{10, 100, 20, 200, 30, 300} {
		b.res.coldHub = append(b.res.coldHub, ms(1000+d))
		b.res.coldBare = append(b.res.coldBare, bareTimes{total: ms(1000)})
	}
	wantInReport(t, b.reportCold,
		"| **hubgate − bare, pair by pair** (median of the differences) | **+65 ms** | +10 ms | +300 ms |",
		"| … in the pairs where hubgate went 50ms ahead (3) / where bare Docker did (3) | +20 ms / +200 ms | | |",
		"Target: ≤ +50 ms — **missed**")
}

// report renders one part of results.md to its lines.
func report(part func(p func(string, ...any))) []string {
	var out []string
	part(func(f string, a ...any) { out = append(out, fmt.Sprintf(f, a...)) })
	return out
}

// wantInReport fails t for each of wants that part's report does not
// hold.
func wantInReport(t *testing.T, part func(p func(string, ...any)), wants ...string) {
	t.Helper()
	all := strings.Join(report(part), "\n")
	for _, want := range wants {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in:\n%s", want, all)
		}
	}
}

// TestPacedSpread: one server is asked at the rate the spread over all
// reached (64 connections, each waiting 64,000 ÷ rate ms), and the report
// sets the spread against that run as well as against the unpaced one.
func TestPacedSpread(t *testing.T) {
	if got := paceFor(1674); got != 38 {
		t.Errorf("paceFor(1674) = %d, want 38", got)
	}
	if paceFor(0) != 0 || paceFor(1e6) != 1 {
		t.Errorf("paceFor(0) = %d, paceFor(1e6) = %d, want 0 and 1", paceFor(0), paceFor(1e6))
	}
	runs := func(rps, cpu float64) spreadRuns {
		return spreadRuns{rps: []float64{rps}, p99: []float64{1000}, cpu: []float64{cpu}}
	}
	b := &bench{}
	b.res.scale = &scaleResult{n: 1000, sizes: []int{1, 1000},
		hub:      []spreadRuns{runs(5000, 100), runs(1600, 240)},
		caddy:    []spreadRuns{runs(4800, 120), runs(1500, 260)},
		hubPaced: runs(1580, 200), caddyPaced: runs(1490, 250)}
	wantInReport(t, b.reportScale,
		"| 1000 ÷ one | 0.320 | 1.00 | **2.40** | 0.312 | 1.00 | **2.17** | |",
		"| 1 user's server at the 1000-server rate (each connection waits 40 ms after each response; Caddy 43 ms) | 1580 | 1.00 ms | 200 µs | 1490 | 1.00 ms | 250 µs | 0.80 |",
		"| 1000 ÷ one at the same rate | 1.013 | | **1.20** | 1.007 | | **1.04** | |",
		"spread over all 1000 ÷ one at the same rate is 1.20")
	// Without plain Caddy's spread, hubgate's rows stand alone.
	b.res.scale.caddy, b.res.scale.caddyPaced, b.res.scale.caddyErr = nil, spreadRuns{}, "it did not start"
	wantInReport(t, b.reportScale,
		"| 1 user's server at the 1000-server rate (each connection waits 40 ms after each response) | 1580 | 1.00 ms | 200 µs | | | | |",
		"| 1000 ÷ one at the same rate | 1.013 | | **1.20** | | | | |")
}
