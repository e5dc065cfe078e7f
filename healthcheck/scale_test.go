package healthcheck

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The scale run: many TCP targets on loopback at a short interval for a
// while, measuring whether checks start on time and what they cost. It is
// too long for the default test run; enable it with
//
//	LBKIT_HC_SCALE=1 go test -run '^TestScale$' -v -count=1 ./healthcheck/
//
// (without -race: the race detector multiplies CPU time). LBKIT_HC_TARGETS,
// LBKIT_HC_SECONDS and LBKIT_HC_LISTENERS change the size (defaults 10000,
// 30, 200); LBKIT_HC_SLOTS sets the Monitor's WithMaxConcurrent (default
// 256), LBKIT_HC_RST=1 uses TCP{ResetOnClose: true}, LBKIT_HC_NOBASE=1
// skips the baseline.
const (
	scaleEnv       = "LBKIT_HC_SCALE"
	scaleServerEnv = "LBKIT_HC_SCALE_SERVER"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestScaleServer is the target side of TestScale, run in a child process
// so that the parent's CPU time is the checker's alone. It listens on N
// loopback ports, accepts and closes every connection, prints its addresses
// and runs until its standard input closes.
func TestScaleServer(t *testing.T) {
	n := envInt(scaleServerEnv, 0)
	if n == 0 {
		t.Skip("the target side of TestScale, run by it in a child process")
	}
	var wg sync.WaitGroup
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		lns = append(lns, ln)
		fmt.Println(ln.Addr())
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		})
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, ln := range lns {
		ln.Close()
	}
	wg.Wait()
}

// scaleRun is what one implementation did during the run.
type scaleRun struct {
	name              string
	late              []time.Duration // start - due, per check
	latency           []time.Duration // per check
	childCPU          time.Duration   // the target process's CPU time meanwhile
	checks, failures  int
	peakG, meanG      int
	cpu               time.Duration
	allocs, bytes     uint64
	reasons           map[string]int
	wall              time.Duration
	targets, interval int
}

func TestScale(t *testing.T) {
	if os.Getenv(scaleEnv) == "" || testing.Short() {
		t.Skipf("set %s=1 to run (about 70 s; without -race)", scaleEnv)
	}
	targets := envInt("LBKIT_HC_TARGETS", 10000)
	seconds := envInt("LBKIT_HC_SECONDS", 30)
	listeners := envInt("LBKIT_HC_LISTENERS", 200)
	const interval = time.Second

	cmd := exec.Command(os.Args[0], "-test.run=^TestScaleServer$", "-test.count=1")
	cmd.Env = append(os.Environ(), scaleServerEnv+"="+strconv.Itoa(listeners))
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	var addrs []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "ready" {
		addrs = append(addrs, sc.Text())
	}
	require.Len(t, addrs, listeners)
	go func() { _, _ = io.Copy(io.Discard, stdout) }()

	// Target i is ID "t<i>" on listener i mod listeners: IDs are what the
	// Monitor schedules; sharing ports keeps the descriptors in bounds.
	ts := make([]Target, targets)
	for i := range ts {
		ts[i] = Target{ID: "t" + strconv.Itoa(i), Addr: addrs[i%listeners]}
	}
	dur := time.Duration(seconds) * time.Second
	runs := []scaleRun{
		measure(t, cmd.Process.Pid, fmt.Sprintf("monitor (heap + %d check slots)", envInt("LBKIT_HC_SLOTS", DefaultMaxConcurrent)),
			ts, interval, dur, runMonitor),
	}
	if os.Getenv("LBKIT_HC_NOBASE") == "" {
		runs = append(runs, measure(t, cmd.Process.Pid, "baseline (goroutine + ticker per target)", ts, interval, dur, runTickers))
	}
	fmt.Printf("\n%d TCP targets on %d loopback listeners, interval %v, %v per implementation; %d CPUs (%s)\n",
		targets, listeners, interval, dur, runtime.NumCPU(), runtime.Version())
	fmt.Printf("%-42s %8s %8s %9s %9s %9s %9s %9s %7s %7s %7s %7s %7s %7s\n", "impl", "checks", "failed",
		"late p50", "late p99", "late max", "lat p50", "lat p99", "gor max", "gor avg", "CPU s", "%core", "tgt CPU", "allocs")
	for _, r := range runs {
		q := func(ds []time.Duration, p float64) time.Duration {
			slices.Sort(ds)
			return ds[int(p*float64(len(ds)-1))]
		}
		fmt.Printf("%-42s %8d %8d %9v %9v %9v %9v %9v %7d %7d %7.2f %6.1f%% %7.2f %7.1f\n", r.name, r.checks, r.failures,
			ms(q(r.late, 0.5)), ms(q(r.late, 0.99)), ms(q(r.late, 1)), ms(q(r.latency, 0.5)), ms(q(r.latency, 0.99)),
			r.peakG, r.meanG, r.cpu.Seconds(), 100*r.cpu.Seconds()/r.wall.Seconds(), r.childCPU.Seconds(),
			float64(r.allocs)/float64(r.checks))
		if len(r.reasons) > 0 {
			type kv struct {
				k string
				v int
			}
			var top []kv
			for k, v := range r.reasons {
				top = append(top, kv{k, v})
			}
			slices.SortFunc(top, func(a, b kv) int { return b.v - a.v })
			fmt.Printf("  top failure reasons (of %d distinct):", len(top))
			for _, x := range top[:min(5, len(top))] {
				fmt.Printf(" %q×%d", x.k, x.v)
			}
			fmt.Println()
		}
	}
	fmt.Println("late: check start minus due time; lat: check latency; gor: goroutines (sampled every 100 ms);")
	fmt.Println("CPU s and share of one core: this process (the checker); tgt CPU: the target process, seconds; allocs: per check")
	for _, r := range runs {
		require.NotEmpty(t, r.late, r.name)
	}
}

// scaleResult is what a run reports for each check.
type scaleResult struct {
	late, latency time.Duration
	reason        string
}

func measure(t *testing.T, child int, name string, ts []Target, interval, dur time.Duration,
	run func(ts []Target, interval, dur time.Duration, report func(scaleResult))) scaleRun {
	r := scaleRun{name: name, reasons: map[string]int{}, targets: len(ts), interval: int(interval)}
	var mu sync.Mutex // guards r.late, r.checks, r.failures and r.reasons
	r.late = make([]time.Duration, 0, len(ts)*int(dur/interval+1))
	r.latency = make([]time.Duration, 0, len(ts)*int(dur/interval+1))
	report := func(x scaleResult) {
		mu.Lock()
		r.late = append(r.late, x.late)
		r.latency = append(r.latency, x.latency)
		r.checks++
		if x.reason != "" {
			r.failures++
			r.reasons[x.reason]++
		}
		mu.Unlock()
	}

	// Sample the goroutine count ten times a second (measurement, not
	// synchronisation).
	stop := make(chan struct{})
	var samplerWG sync.WaitGroup
	var peak, sum, n int
	samplerWG.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				g := runtime.NumGoroutine()
				peak, sum, n = max(peak, g), sum+g, n+1
			}
		}
	})
	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	ru0, c0 := rusage(t), procCPU(t, child)
	start := time.Now()
	run(ts, interval, dur, report)
	r.wall = time.Since(start)
	ru1, c1 := rusage(t), procCPU(t, child)
	r.childCPU = c1 - c0
	runtime.ReadMemStats(&ms1)
	close(stop)
	samplerWG.Wait()
	r.cpu = ru1 - ru0
	r.allocs, r.bytes = ms1.Mallocs-ms0.Mallocs, ms1.TotalAlloc-ms0.TotalAlloc
	r.peakG = peak
	if n > 0 {
		r.meanG = sum / n
	}
	return r
}

// procCPU returns the user and system CPU time of process pid, from
// /proc/pid/stat (in clock ticks of 10 ms on Linux).
func procCPU(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	// Fields after the command name, which is in parentheses: state is
	// field 3; utime and stime are fields 14 and 15.
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	ut, err1 := strconv.Atoi(f[11])
	st, err2 := strconv.Atoi(f[12])
	require.NoError(t, errors.Join(err1, err2))
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// ms rounds a duration for the table.
func ms(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Microsecond)
}

func rusage(t *testing.T) time.Duration {
	var ru syscall.Rusage
	require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func runMonitor(ts []Target, interval, dur time.Duration, report func(scaleResult)) {
	m, err := New(TCP{ResetOnClose: os.Getenv("LBKIT_HC_RST") != ""}, WithInterval(interval), WithTimeout(interval),
		WithMaxConcurrent(envInt("LBKIT_HC_SLOTS", DefaultMaxConcurrent)),
		withResultHook(func(_ string, due time.Time, r Result) { report(scaleResult{r.Time.Sub(due), r.Latency, r.Reason}) }))
	if err != nil {
		panic(err)
	}
	if err := m.Add(ts...); err != nil {
		panic(err)
	}
	time.Sleep(dur) // the measured period, not synchronisation
	m.Close()
}

// runTickers is the simple design the Monitor avoids: a goroutine and a
// ticker per target, sleeping between checks, no bound on concurrency.
func runTickers(ts []Target, interval, dur time.Duration, report func(scaleResult)) {
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var wg sync.WaitGroup
	begin := time.Now()
	for _, tg := range ts {
		wg.Go(func() {
			due := begin.Add(rand.N(interval)) // first check inside the first interval, like the Monitor
			first := time.NewTimer(time.Until(due))
			defer first.Stop()
			select {
			case <-ctx.Done():
				return
			case <-first.C:
			}
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				start := time.Now()
				cctx, ccancel := context.WithTimeout(ctx, interval)
				err := TCP{}.Check(cctx, tg)
				ccancel()
				if ctx.Err() != nil {
					return
				}
				report(scaleResult{start.Sub(due), time.Since(start), Reason(err)})
				due = due.Add(interval)
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		})
	}
	wg.Wait()
}
