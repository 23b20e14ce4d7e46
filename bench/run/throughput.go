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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The server side (the proxies and the app container) runs on CPU 0, the
// load generators (wrk, wsrtt) on CPU 1, so a proxy's CPU per request is
// not inflated by sharing its core with the client.
const (
	serverCPU = "0"
	clientCPU = "1"
)

// target is one way to reach the bench user's app.
type target struct {
	key, label string
	tls        bool
	url        string // base: scheme://host:port, no path
	wsURL      string
	headers    http.Header
	// shown is how the headers appear in results.md (secrets elided).
	shown []string
	// proc is the proxy process (nil for direct).
	proc *caddyProc
}

// targetOrder is the column order of the report.
var targetOrder = []string{"direct", "caddy", "chp", "o2p", "hubgate"}

var targetLabels = map[string]string{
	"direct":  "direct",
	"caddy":   "plain Caddy `reverse_proxy`",
	"chp":     "configurable-http-proxy",
	"o2p":     "oauth2-proxy",
	"hubgate": "hubgate",
}

// targets returns the targets that serve the scheme (direct is http only).
func (b *bench) targets(tls bool) []target {
	tokenHdr := func() http.Header { return http.Header{"Authorization": {"token " + b.app.Token}} }
	tokenShown := "Authorization: token <container secret>"
	var ts []target
	if !tls {
		ts = append(ts, target{
			key: "direct", url: "http://" + b.app.addr(), wsURL: "ws://" + b.app.addr(),
			headers: tokenHdr(), shown: []string{tokenShown},
		})
	}
	scheme := func(p *caddyProc, host string) (string, string) {
		if tls {
			return fmt.Sprintf("https://%s:%d", host, p.httpsPort), fmt.Sprintf("wss://%s:%d", host, p.httpsPort)
		}
		return fmt.Sprintf("http://127.0.0.1:%d", p.httpPort), fmt.Sprintf("ws://127.0.0.1:%d", p.httpPort)
	}
	if b.plain != nil {
		u, ws := scheme(b.plain, "localhost")
		ts = append(ts, target{key: "caddy", url: u, wsURL: ws, proc: b.plain})
	}
	chp := b.chp
	if tls {
		chp = b.chpTLS
	}
	if chp != nil {
		u, ws := scheme(chp, "127.0.0.1")
		ts = append(ts, target{key: "chp", url: u, wsURL: ws, proc: chp, headers: tokenHdr(), shown: []string{tokenShown}})
	}
	o2p := b.o2p
	if tls {
		o2p = b.o2pTLS
	}
	if o2p != nil && b.o2pCookie != "" {
		u, ws := scheme(o2p, "127.0.0.1")
		h := tokenHdr()
		h.Set("Cookie", b.o2pCookie)
		ts = append(ts, target{key: "o2p", url: u, wsURL: ws, proc: o2p, headers: h,
			shown: []string{tokenShown, "Cookie: " + oauth2CookieName + "=<session>"}})
	}
	u, ws := scheme(b.hub, "localhost")
	ts = append(ts, target{key: "hubgate", url: u, wsURL: ws, proc: b.hub,
		headers: http.Header{"Cookie": {b.main.cookie}}, shown: []string{"Cookie: " + sessionCookieName + "=<session>"}})
	for i := range ts {
		ts[i].tls = tls
		ts[i].label = targetLabels[ts[i].key]
	}
	return ts
}

// bodies are the response sizes measured: files the app serves from the
// user's volume (PUT there through the direct address before the runs).
var bodies = []struct {
	key  string
	size int
}{{"100 B", 100}, {"64 KiB", 64 << 10}}

func bodyPath(size int) string { return appPath("bench", "files/body"+strconv.Itoa(size)) }

// putBodies stores the response bodies in the app's home.
func (b *bench) putBodies(ctx context.Context) error {
	c := &http.Client{Timeout: 10 * time.Second}
	for _, body := range bodies {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+b.app.addr()+bodyPath(body.size), bytes.NewReader(bytes.Repeat([]byte("x"), body.size)))
		req.Header.Set("Authorization", "token "+b.app.Token)
		resp, err := c.Do(req)
		if err != nil {
			return fmt.Errorf("store the %s body: %w", body.key, err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("store the %s body: status %d", body.key, resp.StatusCode)
		}
	}
	return nil
}

// checkTargets makes sure every target answers the same body with 200.
func (b *bench) checkTargets(ctx context.Context) error {
	c := insecureClient(nil)
	for _, tls := range []bool{false, true} {
		for _, t := range b.targets(tls) {
			st, body, _, err := fetch(ctx, c, http.MethodGet, t.url+bodyPath(100), t.headers, nil)
			if err != nil || st != http.StatusOK || len(body) != 100 {
				return fmt.Errorf("%s (tls %t): status %d, %d bytes, %v: %.300s", t.label, tls, st, len(body), err, body)
			}
		}
	}
	return nil
}

// cell is one workload: scheme, body size and connections.
type cell struct {
	tls   bool
	body  int
	conns int
}

func (c cell) key() string {
	s := "http"
	if c.tls {
		s = "https"
	}
	return fmt.Sprintf("%s %s x%d", s, bodyLabel(c.body), c.conns)
}

func bodyLabel(size int) string {
	for _, b := range bodies {
		if b.size == size {
			return b.key
		}
	}
	return strconv.Itoa(size) + " B"
}

func (b *bench) cells() []cell {
	var cs []cell
	for _, tls := range []bool{false, true} {
		if tls && !b.cfg.tls {
			continue
		}
		for _, body := range bodies {
			for _, c := range b.cfg.connSet {
				cs = append(cs, cell{tls, body.size, c})
			}
		}
	}
	return cs
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
	// ProxyCPU and AppCPU are the CPU seconds the target's proxy process
	// and the bench user's app container used during the run.
	ProxyCPU, AppCPU float64 `json:"-"`
}

// perRequest returns CPU seconds spread over the run's requests, in µs.
func (w wrkRun) perRequest(seconds float64) float64 {
	if w.Requests == 0 {
		return 0
	}
	return seconds / float64(w.Requests) * 1e6
}

func (w wrkRun) errors() int64 {
	return w.ErrConnect + w.ErrRead + w.ErrWrite + w.ErrStatus + w.ErrTimeout
}

// wrkCmd is wrk (pinned to the client CPU) against url for d with the
// given script; its output goes to the returned buffers.
func (b *bench) wrkCmd(ctx context.Context, url string, hdr http.Header, conns int, d time.Duration, script string, scriptArgs ...string) (*exec.Cmd, []string, *bytes.Buffer, *bytes.Buffer) {
	threads := max(min(b.cfg.threads, conns), 1)
	args := []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", fmt.Sprintf("%ds", max(int(d.Seconds()), 1)),
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
	cmd := exec.CommandContext(ctx, "taskset", append([]string{"-c", clientCPU, "wrk"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, args, &stdout, &stderr
}

// wrkResult reads the summary of a wrk run that has ended, and the CPU
// wrk itself used.
func wrkResult(url string, cmd *exec.Cmd, stdout, stderr *bytes.Buffer) (wrkRun, float64, error) {
	var r wrkRun
	for _, line := range strings.Split(stdout.String(), "\n") {
		if j, ok := strings.CutPrefix(line, "BENCHJSON "); ok {
			if err := json.Unmarshal([]byte(j), &r); err != nil {
				return r, 0, fmt.Errorf("wrk %s summary %q: %w", url, j, err)
			}
		}
	}
	if r.DurationUS == 0 {
		return r, 0, fmt.Errorf("wrk %s printed no summary:\n%s%s", url, stdout.String(), stderr.String())
	}
	r.RPS = float64(r.Requests) / (float64(r.DurationUS) / 1e6)
	var wrkCPU float64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		wrkCPU = float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
	}
	return r, wrkCPU, nil
}

// wrk runs wrk (pinned to the client CPU) against url for d with the given
// script and returns its summary, with the CPU that proxy (may be nil) and
// the app used meanwhile.
func (b *bench) wrk(ctx context.Context, url string, hdr http.Header, conns int, d time.Duration, proxy *caddyProc, script string, scriptArgs ...string) (wrkRun, []string, error) {
	return b.wrkEnv(ctx, nil, url, hdr, conns, d, proxy, script, scriptArgs...)
}

// wrkEnv is wrk with env added to wrk's environment (for its script).
func (b *bench) wrkEnv(ctx context.Context, env []string, url string, hdr http.Header, conns int, d time.Duration, proxy *caddyProc, script string, scriptArgs ...string) (wrkRun, []string, error) {
	cmd, args, stdout, stderr := b.wrkCmd(ctx, url, hdr, conns, d, script, scriptArgs...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	proxyPid := 0
	if proxy != nil {
		proxyPid = proxy.pid()
	}
	pids := []int{proxyPid, b.app.Pid}
	before := readCPU(pids)
	err := cmd.Run()
	after := readCPU(pids)
	if err != nil {
		return wrkRun{}, args, fmt.Errorf("wrk %s: %w\n%s%s", url, err, stdout.String(), stderr.String())
	}
	r, wrkCPU, err := wrkResult(url, cmd, stdout, stderr)
	if err != nil {
		return r, args, err
	}
	r.Other = otherBusy(before, after, wrkCPU)
	if proxyPid > 0 {
		r.ProxyCPU = procSeconds(before, after, proxyPid)
	}
	r.AppCPU = procSeconds(before, after, b.app.Pid)
	return r, args, nil
}

// wrkPair runs wrk against plain Caddy and hubgate at the same time, one
// wrk each (both on the client CPU), for the same d: the two proxies
// share the server CPU and the app, so a change in the machine's speed
// during the run (other guests on the host) reaches both alike, which
// runs one after the other cannot promise. Each proxy's CPU per request
// is its own CPU over its own requests. AppCPU is the app's CPU for both.
func (b *bench) wrkPair(ctx context.Context, pair [2]target, c cell) ([2]wrkRun, error) {
	var runs [2]wrkRun
	type job struct {
		url            string
		cmd            *exec.Cmd
		stdout, stderr *bytes.Buffer
	}
	var jobs [2]job
	pids := []int{pair[0].proc.pid(), pair[1].proc.pid(), b.app.Pid}
	for i, t := range pair {
		url := t.url + bodyPath(c.body)
		cmd, _, stdout, stderr := b.wrkCmd(ctx, url, t.headers, c.conns, b.cfg.duration, "report.lua")
		jobs[i] = job{url, cmd, stdout, stderr}
	}
	before := readCPU(pids)
	errs, err := runTogether([2]*exec.Cmd{jobs[0].cmd, jobs[1].cmd})
	after := readCPU(pids)
	if err != nil {
		return runs, fmt.Errorf("wrk: %w", err)
	}
	var wrkCPU float64
	for i, j := range jobs {
		if errs[i] != nil {
			return runs, fmt.Errorf("wrk %s: %w\n%s%s", j.url, errs[i], j.stdout.String(), j.stderr.String())
		}
		r, cpu, err := wrkResult(j.url, j.cmd, j.stdout, j.stderr)
		if err != nil {
			return runs, err
		}
		if r.errors() > 0 {
			return runs, fmt.Errorf("%s, %s at the same time as %s: %d errors (status %d, connect %d, read %d, timeout %d)", c.key(), pair[i].label, pair[1-i].label,
				r.errors(), r.ErrStatus, r.ErrConnect, r.ErrRead, r.ErrTimeout)
		}
		wrkCPU += cpu
		r.ProxyCPU = procSeconds(before, after, pids[i])
		r.AppCPU = procSeconds(before, after, b.app.Pid)
		runs[i] = r
	}
	for i := range runs {
		runs[i].Other = otherBusy(before, after, wrkCPU)
	}
	return runs, nil
}

// runTogether starts both commands and waits for both, returning each
// one's exit error; when the second cannot start, the first is killed
// and err says why.
func runTogether(cmds [2]*exec.Cmd) (exits [2]error, err error) {
	if err := cmds[0].Start(); err != nil {
		return exits, fmt.Errorf("start %s: %w", cmds[0].Path, err)
	}
	if err := cmds[1].Start(); err != nil {
		_ = cmds[0].Process.Kill()
		_ = cmds[0].Wait()
		return exits, fmt.Errorf("start %s: %w", cmds[1].Path, err)
	}
	for i, cmd := range cmds {
		exits[i] = cmd.Wait()
	}
	return exits, nil
}

// throughput runs wrk against every target in every cell, in alternating
// rounds (each round in a rotated target order, roundOrder), after a
// warm-up of each target.
func (b *bench) throughput(ctx context.Context) error {
	b.res.wrk = map[string]map[string][]wrkRun{}
	b.res.paired = map[string]map[string][]wrkRun{}
	b.res.loadThroughput = loadAvg()
	cells := b.cells()
	log.Printf("throughput: %d workloads x %d rounds of %s per target (load average %.2f)", len(cells), b.cfg.rounds, b.cfg.duration, b.res.loadThroughput)
	for _, tls := range []bool{false, true} {
		for _, t := range b.targets(tls) {
			if _, _, err := b.wrk(ctx, t.url+bodyPath(100), t.headers, 64, b.cfg.warmup, t.proc, "report.lua"); err != nil {
				return err
			}
		}
	}
	for round := range b.cfg.rounds {
		for ci, c := range cells {
			ts := b.targets(c.tls)
			byKey := b.res.wrk[c.key()]
			if byKey == nil {
				byKey = map[string][]wrkRun{}
				b.res.wrk[c.key()] = byKey
			}
			var line []string
			for _, t := range roundOrder(ts, round+ci, round) {
				r, args, err := b.wrk(ctx, t.url+bodyPath(c.body), t.headers, c.conns, b.cfg.duration, t.proc, "report.lua")
				if err != nil {
					return err
				}
				if r.errors() > 0 {
					return fmt.Errorf("%s, %s: %d errors (status %d, connect %d, read %d, timeout %d)", c.key(), t.label,
						r.errors(), r.ErrStatus, r.ErrConnect, r.ErrRead, r.ErrTimeout)
				}
				if round == 0 && ci == 0 {
					b.res.commands = append(b.res.commands, "taskset -c "+clientCPU+" wrk "+shownArgs(args, t))
				}
				byKey[t.key] = append(byKey[t.key], r)
				line = append(line, fmt.Sprintf("%s %.0f/s %.0fµs", t.key, r.RPS, r.perRequest(r.ProxyCPU)))
			}
			if pair, ok := pairOf(ts, round); ok && b.cfg.paired {
				runs, err := b.wrkPair(ctx, pair, c)
				if err != nil {
					return err
				}
				both := b.res.paired[c.key()]
				if both == nil {
					both = map[string][]wrkRun{}
					b.res.paired[c.key()] = both
				}
				for i, t := range pair {
					both[t.key] = append(both[t.key], runs[i])
				}
				line = append(line, fmt.Sprintf("together: %s %.0f/s %.0fµs, %s %.0f/s %.0fµs", pair[0].key, runs[0].RPS, runs[0].perRequest(runs[0].ProxyCPU),
					pair[1].key, runs[1].RPS, runs[1].perRequest(runs[1].ProxyCPU)))
			}
			log.Printf("round %d %s: %s (others busy %.0f%%)", round+1, c.key(), strings.Join(line, ", "), byKey[ts[0].key][len(byKey[ts[0].key])-1].Other)
		}
	}
	return nil
}

// roundOrder is the order of the targets in one round: the others
// rotated by shift, and plain Caddy and hubgate back to back (Caddy
// first in even rounds, hubgate first in odd ones) at a rotating place
// among them. The machine's speed drifts from one run to the next (a run
// of the same target lands in a fast or a slow state; bench/PROFILE.md),
// so the pair whose ratio is the verdict is measured as close together
// as possible, and in both orders.
func roundOrder(ts []target, shift, round int) []target {
	var others, pair []target
	for _, t := range ts {
		if t.key == "caddy" || t.key == "hubgate" {
			pair = append(pair, t)
		} else {
			others = append(others, t)
		}
	}
	if round%2 == 1 {
		slices.Reverse(pair)
	}
	rotated := make([]target, 0, len(ts))
	for i := range others {
		rotated = append(rotated, others[(i+shift)%len(others)])
	}
	at := shift % (len(others) + 1)
	return slices.Concat(rotated[:at], pair, rotated[at:])
}

// pairOf returns plain Caddy and hubgate, the pair run at the same time
// (wrkPair), in the order they are started in round (swapped every other
// round); ok is false when either is not a target.
func pairOf(ts []target, round int) (pair [2]target, ok bool) {
	var n int
	for _, t := range ts {
		switch t.key {
		case "caddy":
			pair[0] = t
			n++
		case "hubgate":
			pair[1] = t
			n++
		}
	}
	if round%2 == 1 {
		pair[0], pair[1] = pair[1], pair[0]
	}
	return pair, n == 2
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
	// proxyCPU is the proxy's CPU µs per round trip.
	proxyCPU float64
}

// wsMode is one way of measuring round trips: conns connections at once,
// msgs round trips each after warmup, messages of size bytes.
type wsMode struct {
	key          string
	conns, msgs  int
	warmup, size int
}

// wsCmd is wsrtt (pinned to the client CPU) through t in mode m.
func (b *bench) wsCmd(ctx context.Context, t target, m wsMode) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	args := []string{"-c", clientCPU, filepath.Join(b.out, "bin", "wsrtt"), "-json", "-url", t.wsURL + appPath("bench", "ws"),
		"-c", strconv.Itoa(m.conns), "-n", strconv.Itoa(m.msgs), "-warmup", strconv.Itoa(m.warmup), "-size", strconv.Itoa(m.size)}
	for k, vs := range t.headers {
		for _, v := range vs {
			args = append(args, "-H", k+": "+v)
		}
	}
	cmd := exec.CommandContext(ctx, "taskset", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, &stdout, &stderr
}

// wsResult reads the summary of a wsrtt run through t that has ended, with
// the proxy's CPU per round trip from the snapshots around it.
func wsResult(t target, m wsMode, stdout, stderr *bytes.Buffer, before, after cpuSnap) (wsRun, error) {
	var res struct {
		Samples int     `json:"samples"`
		P50     int64   `json:"p50_us"`
		P99     int64   `json:"p99_us"`
		Rate    float64 `json:"msgs_per_s"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return wsRun{}, fmt.Errorf("%s: wsrtt output %q: %w: %s", t.label, stdout.String(), err, stderr.String())
	}
	run := wsRun{p50: time.Duration(res.P50) * time.Microsecond, p99: time.Duration(res.P99) * time.Microsecond, rate: res.Rate}
	if t.proc != nil && res.Samples > 0 {
		// Dials and warm-up are in the delta too: a small, equal
		// overhead for every proxy.
		run.proxyCPU = procSeconds(before, after, t.proc.pid()) / float64(res.Samples+m.warmup*m.conns) * 1e6
	}
	return run, nil
}

// wsRunOne runs wsrtt through t alone.
func (b *bench) wsRunOne(ctx context.Context, t target, m wsMode) (wsRun, error) {
	pid := 0
	if t.proc != nil {
		pid = t.proc.pid()
	}
	cmd, stdout, stderr := b.wsCmd(ctx, t, m)
	before := readCPU([]int{pid})
	err := cmd.Run()
	after := readCPU([]int{pid})
	if err != nil {
		return wsRun{}, fmt.Errorf("%s: wsrtt: %w: %s", t.label, err, stderr.String())
	}
	return wsResult(t, m, stdout, stderr, before, after)
}

// wsRunPair runs wsrtt through plain Caddy and hubgate at the same time,
// as wrkPair does for requests.
func (b *bench) wsRunPair(ctx context.Context, pair [2]target, m wsMode) ([2]wsRun, error) {
	var runs [2]wsRun
	var cmds [2]*exec.Cmd
	var stdouts, stderrs [2]*bytes.Buffer
	pids := []int{pair[0].proc.pid(), pair[1].proc.pid()}
	for i, t := range pair {
		cmds[i], stdouts[i], stderrs[i] = b.wsCmd(ctx, t, m)
	}
	before := readCPU(pids)
	exits, err := runTogether(cmds)
	after := readCPU(pids)
	if err != nil {
		return runs, fmt.Errorf("wsrtt: %w", err)
	}
	for i, t := range pair {
		if exits[i] != nil {
			return runs, fmt.Errorf("%s at the same time as %s: wsrtt: %w: %s", t.label, pair[1-i].label, exits[i], stderrs[i].String())
		}
		r, err := wsResult(t, m, stdouts[i], stderrs[i], before, after)
		if err != nil {
			return runs, err
		}
		runs[i] = r
	}
	return runs, nil
}

// websockets measures echo round trips through every http target:
// sequential on one connection, and wsConns connections at once; rounds
// alternate, and in each plain Caddy and hubgate also run at the same
// time (wsRunPair). The client is bench/out/bin/wsrtt pinned to the
// client CPU.
func (b *bench) websockets(ctx context.Context) error {
	b.res.ws = map[string][]wsRun{}
	b.res.wsPaired = map[string][]wsRun{}
	b.res.loadWS = loadAvg()
	modes := []wsMode{
		{"seq", 1, b.cfg.wsMsgs, 200, 64},
		// Each mode runs a few seconds per target: the proxies' CPU
		// comes from /proc in 10 ms ticks, and a short run cannot
		// resolve 5%.
		{"conc", b.cfg.wsConns, max(b.cfg.wsMsgs/2, 50), 50, 64},
	}
	b.res.wsModes = fmt.Sprintf("sequential: 1 connection x %d round trips; concurrent: %d connections x %d round trips each; 64-byte binary messages; plain ws",
		modes[0].msgs, modes[1].conns, modes[1].msgs)
	log.Printf("websockets: %s; %d rounds (load average %.2f)", b.res.wsModes, b.cfg.wsRounds, b.res.loadWS)
	ts := b.targets(false)
	for round := range b.cfg.wsRounds {
		for _, t := range roundOrder(ts, round, round) {
			for _, m := range modes {
				run, err := b.wsRunOne(ctx, t, m)
				if err != nil {
					return err
				}
				k := t.key + "/" + m.key
				b.res.ws[k] = append(b.res.ws[k], run)
				log.Printf("round %d %s %s: p50 %s p99 %s %.0f msgs/s, proxy CPU %.0fµs per round trip", round+1, t.key, m.key, run.p50, run.p99, run.rate, run.proxyCPU)
				if round == 0 {
					hdr := ""
					for _, s := range t.shown {
						hdr += " -H '" + s + "'"
					}
					b.res.commands = append(b.res.commands, fmt.Sprintf("taskset -c %s bench/out/bin/wsrtt -url %s%s%s -c %d -n %d -warmup %d -size %d",
						clientCPU, t.wsURL, appPath("bench", "ws"), hdr, m.conns, m.msgs, m.warmup, m.size))
				}
			}
		}
		pair, ok := pairOf(ts, round)
		if !ok || !b.cfg.paired {
			continue
		}
		for _, m := range modes {
			runs, err := b.wsRunPair(ctx, pair, m)
			if err != nil {
				return err
			}
			for i, t := range pair {
				k := t.key + "/" + m.key
				b.res.wsPaired[k] = append(b.res.wsPaired[k], runs[i])
			}
			log.Printf("round %d together %s: %s p50 %s %.0f msgs/s %.0fµs, %s p50 %s %.0f msgs/s %.0fµs per round trip", round+1, m.key,
				pair[0].key, runs[0].p50, runs[0].rate, runs[0].proxyCPU, pair[1].key, runs[1].p50, runs[1].rate, runs[1].proxyCPU)
		}
	}
	return nil
}

// profile takes CPU and allocation profiles of plain Caddy and hubgate
// from their admin endpoints (/debug/pprof/) while wrk runs the plain-http
// 100 B workload at 64 connections against each in turn: cpu for
// BENCH_PPROF_SECONDS, allocs before and after (pprof -base gives the
// allocations of the run). Files: bench/out/pprof-<target>-{cpu,allocs0,allocs1}.pb.gz.
func (b *bench) profile(ctx context.Context) error {
	secs := b.cfg.pprofSeconds
	for _, t := range b.targets(false) {
		if t.key != "caddy" && t.key != "hubgate" {
			continue
		}
		get := func(path, file string, timeout time.Duration) error {
			c := &http.Client{Timeout: timeout}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.proc.admin+path, nil)
			resp, err := c.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d: %s", resp.StatusCode, body)
			}
			if err != nil {
				return fmt.Errorf("%s %s: %w", t.label, path, err)
			}
			return os.WriteFile(filepath.Join(b.out, "pprof-"+t.key+"-"+file+".pb.gz"), body, 0o644)
		}
		done := make(chan error, 1)
		go func() {
			time.Sleep(time.Second)
			if err := get("/debug/pprof/allocs", "allocs0", 30*time.Second); err != nil {
				done <- err
				return
			}
			if err := get(fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), "cpu", time.Duration(secs+30)*time.Second); err != nil {
				done <- err
				return
			}
			done <- get("/debug/pprof/allocs", "allocs1", 30*time.Second)
		}()
		r, _, err := b.wrk(ctx, t.url+bodyPath(100), t.headers, envInt("BENCH_PPROF_CONNS", 64), time.Duration(secs+3)*time.Second, t.proc, "report.lua")
		if perr := <-done; perr != nil {
			return perr
		}
		if err != nil {
			return err
		}
		// The profile covers secs of the run: about that share of its
		// requests (to turn profile seconds into µs per request).
		inProfile := float64(r.Requests) * float64(secs) / (float64(r.DurationUS) / 1e6)
		line := fmt.Sprintf("%s: %.0f req/s, %.1f µs CPU per request, about %.0f requests in the %d s profile", t.label, r.RPS, r.perRequest(r.ProxyCPU), inProfile, secs)
		log.Printf("profiled %s", line)
		b.res.profiled = append(b.res.profiled, line)
		_ = os.WriteFile(filepath.Join(b.out, "pprof-"+t.key+"-requests.txt"), []byte(fmt.Sprintf("%.0f\n", inProfile)), 0o644)
	}
	return nil
}
