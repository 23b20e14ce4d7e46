package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

type machine struct {
	nproc, cpu, mem, kernel, docker, caddy, git string
}

func machineInfo(ctx context.Context, root, caddyBin string) machine {
	m := machine{
		nproc:  run(ctx, "", "nproc"),
		kernel: run(ctx, "", "uname", "-sr"),
		docker: run(ctx, "", "docker", "version", "--format", "{{.Server.Version}}"),
		caddy:  strings.Fields(run(ctx, "", caddyBin, "version") + " ?")[0],
		git:    run(ctx, root, "git", "rev-parse", "--short", "HEAD"),
	}
	if dirty := run(ctx, root, "git", "status", "--porcelain", "--untracked-files=no"); dirty != "" {
		m.git += fmt.Sprintf(" + %d modified files (uncommitted work of the tree at run time)", len(strings.Split(dirty, "\n")))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.Atoi(f[1])
				m.mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	return m
}

func run(ctx context.Context, dir, name string, args ...string) string {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func uptime() string { return run(context.Background(), "", "uptime") }

// loadAvg returns the 1-minute load average.
func loadAvg() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// settleLoad is the 1-minute load average settle waits for, below the
// judged bound (maxJudgedLoad) so that the run's own start does not
// cross it.
const settleLoad = 1.0

// settle waits, at most limit, until the 1-minute load average is at
// most settleLoad: the builds before a run (bin/caddy, the images,
// oauth2-proxy) leave it at 2-4, and it falls by about e every minute.
// On a machine that stays busy it gives up after limit; the report then
// judges nothing whose start was above maxJudgedLoad.
func settle(limit time.Duration) {
	t0 := time.Now()
	for i, l := 0, loadAvg(); l > settleLoad; i, l = i+1, loadAvg() {
		if time.Since(t0) >= limit {
			log.Printf("load average still %.2f after %s (BENCH_SETTLE): going on", l, limit)
			return
		}
		if i%6 == 0 {
			log.Printf("waiting for the load average (%.2f) to fall to %.1f (at most %s, BENCH_SETTLE)", l, settleLoad, limit)
		}
		time.Sleep(5 * time.Second)
	}
	if d := time.Since(t0); d > time.Second {
		log.Printf("load average %.2f after %s", loadAvg(), d.Round(time.Second))
	}
}

// cpuSnap is the machine's CPU time (from /proc/stat) and that of some
// processes (from /proc/<pid>/stat), in clock ticks.
type cpuSnap struct {
	total, idle, irq uint64
	// steal is the time the hypervisor ran other guests while this
	// machine had work (a busy host).
	steal uint64
	procs uint64
	// per is each process's ticks, by pid.
	per map[int]uint64
}

// procSeconds returns the CPU seconds pid used between a and b.
func procSeconds(a, b cpuSnap, pid int) float64 {
	return float64(b.per[pid]-a.per[pid]) / ticksPerSecond
}

func readCPU(pids []int) cpuSnap {
	s := cpuSnap{per: map[int]uint64{}}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		// cpu user nice system idle iowait irq softirq steal ...
		for i := 1; i < len(f) && i <= 8; i++ {
			v, _ := strconv.ParseUint(f[i], 10, 64)
			s.total += v
			switch i {
			case 4, 5:
				s.idle += v
			case 6, 7:
				s.irq += v
			case 8:
				s.steal = v
			}
		}
	}
	for _, pid := range pids {
		if pid <= 0 {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		_, rest, ok := strings.Cut(string(b), ") ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) > 12 {
			u, _ := strconv.ParseUint(f[11], 10, 64)
			st, _ := strconv.ParseUint(f[12], 10, 64)
			s.procs += u + st
			s.per[pid] = u + st
		}
	}
	return s
}

// ticksPerSecond is USER_HZ, the unit of /proc/stat on Linux.
const ticksPerSecond = 100

// otherBusy returns the share of the whole machine (0-100) that was busy
// between a and b on something other than the given processes, extra
// seconds of CPU (a finished child such as wrk) and interrupt handling
// (loopback and bridge traffic is accounted there).
func otherBusy(a, b cpuSnap, extraSeconds float64) float64 {
	total := float64(b.total - a.total)
	if total <= 0 {
		return 0
	}
	busy := total - float64(b.idle-a.idle)
	ours := float64(b.procs-a.procs) + float64(b.irq-a.irq) + extraSeconds*ticksPerSecond
	return max(0, (busy-ours)/total*100)
}

// sampleBusy returns how busy (0-100) the whole machine is over d.
func sampleBusy(d time.Duration) float64 {
	a := readCPU(nil)
	time.Sleep(d)
	return otherBusy(a, readCPU(nil), 0)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianDur(ds []time.Duration) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return time.Duration(median(xs))
}

func percentileDur(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// stealShare is the share (0-100) of the machine's time the host gave to
// other guests between a and b.
func stealShare(a, b cpuSnap) float64 {
	if b.total <= a.total {
		return 0
	}
	return float64(b.steal-a.steal) / float64(b.total-a.total) * 100
}
