package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hubgate/hubgate/bench/internal/wsrtt"
)

// target is one way to reach the bench user's app.
type target struct {
	key, label string
	url        string // base: scheme://host:port, no path
	wsURL      string
	headers    http.Header
	// shown is how the headers appear in results.md (secrets elided).
	shown []string
}

func (b *bench) targets() []target {
	return []target{
		{
			key: "a", label: "(a) direct, http to the container",
			url: "http://" + b.app.addr(), wsURL: "ws://" + b.app.addr(),
			headers: http.Header{"Authorization": {"token " + b.app.Token}},
			shown:   []string{"Authorization: token <container secret>"},
		},
		{
			key: "b", label: "(b) plain Caddy reverse_proxy, https",
			url: b.plain.url(""), wsURL: strings.Replace(b.plain.url(""), "https:", "wss:", 1),
		},
		{
			key: "c", label: "(c) hubgate, https, logged in",
			url: b.hub.url(""), wsURL: strings.Replace(b.hub.url(""), "https:", "wss:", 1),
			headers: http.Header{"Cookie": {b.main.cookie}},
			shown:   []string{"Cookie: " + sessionCookieName + "=<session>"},
		},
	}
}

// checkTargets makes sure a, b and c answer the same app with 200.
func (b *bench) checkTargets(ctx context.Context) error {
	c := insecureClient(nil)
	b.res.bodyBytes = map[string]int{}
	for _, t := range b.targets() {
		st, body, _, err := fetch(ctx, c, http.MethodGet, t.url+appPath("bench", "whoami"), t.headers, nil)
		if err != nil || st != http.StatusOK {
			return fmt.Errorf("%s: status %d, %v: %s", t.label, st, err, body)
		}
		b.res.bodyBytes[t.key] = len(body)
	}
	return nil
}

// wrkRun is one wrk run's summary.
type wrkRun struct {
	Requests   int64   `json:"requests"`
	DurationUS int64   `json:"duration_us"`
	Bytes      int64   `json:"bytes"`
	P50        float64 `json:"p50_us"`
	P90        float64 `json:"p90_us"`
	P99        float64 `json:"p99_us"`
	P999       float64 `json:"p999_us"`
	Max        float64 `json:"max_us"`
	Mean       float64 `json:"mean_us"`
	ErrConnect int64   `json:"err_connect"`
	ErrRead    int64   `json:"err_read"`
	ErrWrite   int64   `json:"err_write"`
	ErrStatus  int64   `json:"err_status"`
	ErrTimeout int64   `json:"err_timeout"`

	RPS float64 `json:"-"`
	// Other is the share of the machine busy with other processes
	// (other developers' tests) during the run.
	Other float64 `json:"-"`
	// Profiled runs had a CPU profile taken (BENCH_PPROF=1).
	Profiled bool `json:"-"`
	// HubCPU, PlainCPU and AppCPU are the CPU seconds hubgate, plain
	// Caddy and the bench user's app container used during the run.
	HubCPU, PlainCPU, AppCPU float64 `json:"-"`
}

// perRequest returns CPU seconds spread over the run's requests, in µs.
func (w wrkRun) perRequest(seconds float64) float64 {
	if w.Requests == 0 {
		return 0
	}
	return seconds / float64(w.Requests) * 1e6
}

// profile takes a CPU profile of target key's Caddy process (b: plain,
// c: hubgate) from its admin endpoint while wrk runs, into
// bench/out/pprof-<key>.pb.gz.
func (b *bench) profile(ctx context.Context, key string) chan error {
	p := b.hub
	if key == "b" {
		p = b.plain
	}
	secs := max(int(b.cfg.duration.Seconds())-2, 1)
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
			err = fmt.Errorf("status %d: %s", resp.StatusCode, body)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(b.out, "pprof-"+key+".pb.gz"), body, 0o644)
		}
		done <- err
	}()
	return done
}

func (w wrkRun) errors() int64 {
	return w.ErrConnect + w.ErrRead + w.ErrWrite + w.ErrStatus + w.ErrTimeout
}

// wrk runs wrk against url for d with the given script and returns its
// summary. pids are our processes, not counted as "other" CPU.
func (b *bench) wrk(ctx context.Context, url string, hdr http.Header, d time.Duration, script string, scriptArgs ...string) (wrkRun, []string, error) {
	args := []string{"-t", strconv.Itoa(b.cfg.threads), "-c", strconv.Itoa(b.cfg.conns), "-d", fmt.Sprintf("%ds", int(d.Seconds())),
		"--timeout", "5s", "-s", filepath.Join(b.root, "bench", "wrk", script)}
	for k, vs := range hdr {
		for _, v := range vs {
			args = append(args, "-H", k+": "+v)
		}
	}
	args = append(args, url)
	if len(scriptArgs) > 0 {
		args = append(append(args, "--"), scriptArgs...)
	}
	cmd := exec.CommandContext(ctx, "wrk", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	pids := []int{b.hub.pid(), b.plain.pid(), b.app.Pid}
	before := readCPU(pids)
	err := cmd.Run()
	after := readCPU(pids)
	if err != nil {
		return wrkRun{}, args, fmt.Errorf("wrk %s: %w\n%s%s", url, err, stdout.String(), stderr.String())
	}
	var r wrkRun
	for _, line := range strings.Split(stdout.String(), "\n") {
		if j, ok := strings.CutPrefix(line, "BENCHJSON "); ok {
			if err := json.Unmarshal([]byte(j), &r); err != nil {
				return r, args, fmt.Errorf("wrk summary %q: %w", j, err)
			}
		}
	}
	if r.DurationUS == 0 {
		return r, args, fmt.Errorf("wrk printed no summary:\n%s%s", stdout.String(), stderr.String())
	}
	r.RPS = float64(r.Requests) / (float64(r.DurationUS) / 1e6)
	var wrkCPU float64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		wrkCPU = float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
	}
	r.Other = otherBusy(before, after, wrkCPU)
	r.HubCPU = procSeconds(before, after, b.hub.pid())
	r.PlainCPU = procSeconds(before, after, b.plain.pid())
	r.AppCPU = procSeconds(before, after, b.app.Pid)
	return r, args, nil
}

// throughput runs wrk against a, b and c in alternating rounds (each
// round in a rotated order), after a warm-up of each.
func (b *bench) throughput(ctx context.Context) error {
	ts := b.targets()
	b.res.wrk = map[string][]wrkRun{}
	b.res.loadThroughput = loadAvg()
	log.Printf("throughput: wrk -t%d -c%d, warm-up %s each, then %d rounds of %s (load average %.2f)",
		b.cfg.threads, b.cfg.conns, b.cfg.warmup, b.cfg.rounds, b.cfg.duration, b.res.loadThroughput)
	for _, t := range ts {
		if _, _, err := b.wrk(ctx, t.url+appPath("bench", "whoami"), t.headers, b.cfg.warmup, "report.lua"); err != nil {
			return err
		}
	}
	for round := range b.cfg.rounds {
		for i := range ts {
			t := ts[(i+round)%len(ts)]
			var profiled chan error
			if b.cfg.pprof && round == 0 && t.key != "a" {
				profiled = b.profile(ctx, t.key)
			}
			r, args, err := b.wrk(ctx, t.url+appPath("bench", "whoami"), t.headers, b.cfg.duration, "report.lua")
			if err != nil {
				return err
			}
			if profiled != nil {
				if err := <-profiled; err != nil {
					log.Printf("profile %s: %v", t.key, err)
				}
				r.Profiled = true
			}
			if round == 0 {
				b.res.commands = append(b.res.commands, "wrk "+shownArgs(args, t))
			}
			log.Printf("round %d %s: %.0f req/s, p50 %.2fms, p99 %.2fms, errors %d, others busy %.0f%%; CPU per request: hubgate %.0fµs, plain Caddy %.0fµs, app %.0fµs",
				round+1, t.key, r.RPS, r.P50/1000, r.P99/1000, r.errors(), r.Other, r.perRequest(r.HubCPU), r.perRequest(r.PlainCPU), r.perRequest(r.AppCPU))
			b.res.wrk[t.key] = append(b.res.wrk[t.key], r)
		}
	}
	return nil
}

// shownArgs prints wrk's arguments with the secrets elided.
func shownArgs(args []string, t target) string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-H" && i+1 < len(args) {
			name, _, _ := strings.Cut(args[i+1], ":")
			for _, s := range t.shown {
				if strings.HasPrefix(s, name+":") {
					out = append(out, "-H", "'"+s+"'")
				}
			}
			i++
			continue
		}
		if strings.Contains(a, "/bench/wrk/") {
			a = "bench/wrk/" + filepath.Base(a)
		}
		out = append(out, a)
	}
	return strings.Join(out, " ")
}

// wsRun is one websocket measurement.
type wsRun struct {
	p50, p99 time.Duration
	rate     float64
}

// websockets measures echo round trips through a, b and c: sequential on
// one connection, and wsConns connections at once; rounds alternate.
func (b *bench) websockets(ctx context.Context) error {
	ts := b.targets()
	b.res.ws = map[string][]wsRun{}
	b.res.loadWS = loadAvg()
	modes := []struct {
		key          string
		conns, msgs  int
		warmup, size int
	}{
		{"seq", 1, b.cfg.wsMsgs, 200, 64},
		{"conc", b.cfg.wsConns, max(b.cfg.wsMsgs/8, 50), 50, 64},
	}
	b.res.wsModes = fmt.Sprintf("sequential: 1 connection x %d round trips; concurrent: %d connections x %d round trips each; 64-byte binary messages",
		modes[0].msgs, modes[1].conns, modes[1].msgs)
	log.Printf("websockets: %s; %d rounds (load average %.2f)", b.res.wsModes, b.cfg.wsRounds, b.res.loadWS)
	for round := range b.cfg.wsRounds {
		for i := range ts {
			t := ts[(i+round)%len(ts)]
			for _, m := range modes {
				res, err := wsrtt.Run(ctx, wsrtt.Options{
					URL: t.wsURL + appPath("bench", "ws"), Header: t.headers,
					Conns: m.conns, Msgs: m.msgs, Warmup: m.warmup, Size: m.size,
				})
				if err != nil {
					return fmt.Errorf("%s: %w", t.label, err)
				}
				k := t.key + "/" + m.key
				b.res.ws[k] = append(b.res.ws[k], wsRun{res.P50, res.P99, res.MsgsPerSec})
				log.Printf("round %d %s %s: p50 %s p99 %s %.0f msgs/s", round+1, t.key, m.key, res.P50, res.P99, res.MsgsPerSec)
				if round == 0 {
					hdr := ""
					for _, s := range t.shown {
						hdr += " -H '" + s + "'"
					}
					b.res.commands = append(b.res.commands, fmt.Sprintf("bench/out/bin/wsrtt -url %s%s%s -c %d -n %d -warmup %d -size %d",
						t.wsURL, appPath("bench", "ws"), hdr, m.conns, m.msgs, m.warmup, m.size))
				}
			}
		}
	}
	return nil
}
