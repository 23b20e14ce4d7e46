package main

import (
	"slices"
	"testing"
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
