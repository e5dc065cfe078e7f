package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/flowtable"
	"github.com/lbkit/lbkit/proxy"
	"github.com/lbkit/lbkit/sticky"
)

func main() {
	log.SetFlags(0)
	if len(os.Args) < 2 {
		log.Fatal("usage: l4bench run|lbkit|iocopy|server|client [flags]")
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "run":
		err = run(args)
	case "lbkit":
		err = serveLbkit(args)
	case "iocopy":
		err = serveIOCopy(args)
	case "server":
		err = serveShort(args)
	case "client":
		err = clientShort(args)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// untilSignal returns a context cancelled by SIGTERM or SIGINT.
func untilSignal() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

// serveLbkit runs lbkit's TCP proxy (and UDP proxy with -udp) on -listen in
// front of one target, with every feature of the data path on: flow table
// with idle timeouts and limits, ACL, source-IP stickiness, passive health
// hook, counters.
func serveLbkit(args []string) error {
	fs := flag.NewFlagSet("lbkit", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:6001", "listen address (TCP, and UDP with -udp)")
	target := fs.String("target", "127.0.0.1:5201", "target address")
	udp := fs.Bool("udp", false, "also proxy UDP on the same address")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	fs.Parse(args)
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	b, err := balancer.New(balancer.WithTargets(balancer.Target{ID: "t1", Addr: *target, Weight: 1}))
	if err != nil {
		return err
	}
	pol, err := sticky.NewSourceIP()
	if err != nil {
		return err
	}
	var failures atomic.Uint64
	u := &proxy.Upstream{Name: "bench", Balancer: b, OnResult: func(_ string, err error) {
		if err != nil {
			failures.Add(1)
		}
	}}
	u.SetSticky(pol)
	acl, err := proxy.ParseACL([]string{"127.0.0.0/8", "::1"}, []string{"192.0.2.0/24"})
	if err != nil {
		return err
	}
	flows, err := proxy.NewFlowTable(flowtable.WithMaxFlows(1<<20), flowtable.WithMaxFlowsPerSource(1<<18))
	if err != nil {
		return err
	}
	defer flows.Close()

	ctx, stop := untilSignal()
	defer stop()
	// Keepalive off on the listener: the flow table's idle timeout rules,
	// and accepting saves the four setsockopt calls Go makes by default.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(ctx, "tcp", *listen)
	if err != nil {
		return err
	}
	tp := &proxy.TCP{Flows: flows}
	if err := tp.SetUpstream(u); err != nil {
		return err
	}
	tp.SetACL(acl)
	errc := make(chan error, 2)
	go func() { errc <- tp.Serve(ln) }()
	var up *proxy.UDP
	if *udp {
		pc, err := lc.ListenPacket(ctx, "udp", *listen)
		if err != nil {
			return err
		}
		if uc, ok := pc.(*net.UDPConn); ok {
			_ = uc.SetReadBuffer(4 << 20)
			_ = uc.SetWriteBuffer(4 << 20)
		}
		up = &proxy.UDP{Flows: flows}
		if err := up.SetUpstream(u); err != nil {
			return err
		}
		up.SetACL(acl)
		go func() { errc <- up.Serve(pc) }()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	tp.Close()
	if up != nil {
		up.Close()
		log.Printf("lbkit udp: %+v", up.Stats())
	}
	log.Printf("lbkit tcp: %+v; connect failures %d", tp.Stats(), failures.Load())
	return nil
}

// serveIOCopy runs the minimal proxy: io.Copy both ways between
// *net.TCPConn (so Linux splices), a goroutine per direction, nothing else.
func serveIOCopy(args []string) error {
	fs := flag.NewFlagSet("iocopy", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:6002", "listen address")
	target := fs.String("target", "127.0.0.1:5201", "target address")
	fs.Parse(args)
	ctx, stop := untilSignal()
	defer stop()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			return nil
		}
		go func() {
			defer c.Close()
			t, err := net.Dial("tcp", *target)
			if err != nil {
				return
			}
			defer t.Close()
			done := make(chan struct{})
			go func() {
				io.Copy(t, c)
				t.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			io.Copy(c, t)
			c.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}

// serveShort is the short-connection target: it reads one request (up to
// 64 bytes), writes the same bytes back, and closes.
func serveShort(args []string) error {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:5300", "listen address")
	fs.Parse(args)
	ctx, stop := untilSignal()
	defer stop()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			return nil
		}
		go func() {
			defer c.Close()
			var buf [64]byte
			c.SetDeadline(time.Now().Add(10 * time.Second))
			n, err := c.Read(buf[:])
			if err != nil {
				return
			}
			c.Write(buf[:n])
		}()
	}
}

// clientShort opens connections to -addr from -workers goroutines for
// -duration: connect, write a 32-byte request, read the 32-byte answer and
// the server's close, close. It prints one JSON line of results.
func clientShort(args []string) error {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:5300", "address")
	workers := fs.Int("workers", 32, "concurrent connections")
	duration := fs.Duration("duration", 10*time.Second, "run time")
	fs.Parse(args)
	var ok, failed atomic.Uint64
	deadline := time.Now().Add(*duration)
	req := []byte(strings.Repeat("x", 32))
	var wg sync.WaitGroup
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for time.Now().Before(deadline) {
				c, err := net.DialTimeout("tcp", *addr, 5*time.Second)
				if err != nil {
					failed.Add(1)
					continue
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				_, err = c.Write(req)
				if err == nil {
					_, err = io.ReadFull(c, buf[:len(req)])
				}
				if err == nil {
					_, err = c.Read(buf) // the server's close
					if err == io.EOF {
						err = nil
					}
				}
				c.Close()
				if err != nil {
					failed.Add(1)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	return json.NewEncoder(os.Stdout).Encode(map[string]float64{
		"conns_per_sec": float64(ok.Load()) / duration.Seconds(),
		"ok":            float64(ok.Load()),
		"failed":        float64(failed.Load()),
	})
}

// ---- the run ----

const (
	iperfPort = 5201
	shortPort = 5300
)

// peer is one way to reach the targets.
type peer struct {
	name string
	port int // the port the clients use
	// start starts the peer in front of target port tport and returns a
	// stop function.
	start func(tport int, udp bool) (func(), error)
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	duration := fs.Duration("duration", 10*time.Second, "length of each measurement")
	reps := fs.Int("reps", 3, "repetitions of each measurement (the median is reported)")
	workers := fs.Int("workers", 32, "concurrent clients of the short-connection test")
	only := fs.String("only", "tcp,conn,udp", "which tests to run")
	paths := fs.String("paths", "direct,lbkit,iocopy,haproxy,nginx", "which paths to measure")
	fs.Parse(args)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "l4bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if logs, err = os.Create(filepath.Join(os.TempDir(), "l4bench-procs.log")); err != nil {
		return err
	}
	defer logs.Close()

	var ps []peer
	for _, p := range peers(self, work) {
		if slices.Contains(strings.Split(*paths, ","), p.name) {
			ps = append(ps, p)
		}
	}
	var lines []string
	out := func(format string, a ...any) {
		s := fmt.Sprintf(format, a...)
		fmt.Println(s)
		lines = append(lines, s)
	}
	out("# l4bench: duration %v, %d repetitions (median), short-connection workers %d", *duration, *reps, *workers)

	if strings.Contains(*only, "tcp") {
		stopSrv, err := startProc("iperf3", "-s", "-B", "127.0.0.1", "-p", fmt.Sprint(iperfPort))
		if err != nil {
			return err
		}
		waitPort("tcp", iperfPort)
		vals := map[string][]float64{}
		interleave(ps, *reps, false, iperfPort, func(p peer) {
			v, err := iperfTCP(p.port, *duration)
			if err != nil {
				log.Printf("%s: iperf3: %v", p.name, err)
				return
			}
			if v > 0 {
				vals[p.name] = append(vals[p.name], v/1e9)
			}
		})
		res := medians(vals, "bulk TCP", "Gbit/s")
		stopSrv()
		table(out, "Bulk TCP (iperf3, 1 stream)", "Gbit/s", res)
	}

	if strings.Contains(*only, "conn") {
		stopSrv, err := startProc(self, "server", "-listen", fmt.Sprintf("127.0.0.1:%d", shortPort))
		if err != nil {
			return err
		}
		waitPort("tcp", shortPort)
		vals := map[string][]float64{}
		interleave(ps, *reps, false, shortPort, func(p peer) {
			v, err := shortConns(self, p.port, *workers, *duration)
			if err != nil {
				log.Printf("%s: client: %v", p.name, err)
				return
			}
			vals[p.name] = append(vals[p.name], v)
		})
		res := medians(vals, "short conns", "conn/s")
		stopSrv()
		table(out, "Short connections (connect, 32-byte request/response, close)", "conn/s", res)
	}

	if strings.Contains(*only, "udp") {
		stopSrv, err := startProc("iperf3", "-s", "-B", "127.0.0.1", "-p", fmt.Sprint(iperfPort))
		if err != nil {
			return err
		}
		waitPort("tcp", iperfPort)
		var ups []peer
		for _, p := range ps {
			if p.name != "iocopy" && p.name != "haproxy" { // TCP only
				ups = append(ups, p)
			}
		}
		gs, ls := map[string][]float64{}, map[string][]float64{}
		interleave(ups, *reps, true, iperfPort, func(p peer) {
			g, l, err := iperfUDP(p.port, *duration)
			if err != nil {
				log.Printf("%s: iperf3 -u: %v", p.name, err)
				return
			}
			gs[p.name], ls[p.name] = append(gs[p.name], g/1e9), append(ls[p.name], l)
		})
		good := medians(gs, "UDP goodput", "Gbit/s")
		loss := medians(ls, "UDP loss", "%")
		stopSrv()
		table(out, "UDP goodput (iperf3 -u -b 0, 1400-byte datagrams)", "Gbit/s", good)
		out("")
		out("UDP loss (%%, lower is better): %s", fmtMap(loss))
	}
	if name := os.Getenv("L4BENCH_OUT"); name != "" {
		return os.WriteFile(name, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	}
	return nil
}

// peers returns the ways to reach the targets: directly, through lbkit,
// the minimal proxy, HAProxy and nginx.
func peers(self, work string) []peer {
	return []peer{
		{name: "direct", port: 0, start: func(tport int, _ bool) (func(), error) { return func() {}, nil }},
		{name: "lbkit", port: 6001, start: func(tport int, udp bool) (func(), error) {
			args := []string{"lbkit", "-listen", "127.0.0.1:6001", "-target", fmt.Sprintf("127.0.0.1:%d", tport)}
			if udp {
				args = append(args, "-udp")
			}
			stop, err := startProc(self, args...)
			if err == nil {
				waitPort("tcp", 6001)
			}
			return stop, err
		}},
		{name: "iocopy", port: 6002, start: func(tport int, _ bool) (func(), error) {
			stop, err := startProc(self, "iocopy", "-listen", "127.0.0.1:6002", "-target", fmt.Sprintf("127.0.0.1:%d", tport))
			if err == nil {
				waitPort("tcp", 6002)
			}
			return stop, err
		}},
		{name: "haproxy", port: 6003, start: func(tport int, _ bool) (func(), error) {
			cfg := filepath.Join(work, "haproxy.cfg")
			conf := fmt.Sprintf(`global
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option splice-auto
frontend f
    bind 127.0.0.1:6003
    default_backend b
backend b
    server t1 127.0.0.1:%d
`, tport)
			if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
				return nil, err
			}
			stop, err := startProc("haproxy", "-db", "-f", cfg)
			if err == nil {
				waitPort("tcp", 6003)
			}
			return stop, err
		}},
		{name: "nginx", port: 6004, start: func(tport int, udp bool) (func(), error) {
			dir := filepath.Join(work, "nginx")
			os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
			udpServer := ""
			if udp {
				udpServer = fmt.Sprintf("    server { listen 127.0.0.1:6004 udp; proxy_pass 127.0.0.1:%d; proxy_timeout 120s; }\n", tport)
			}
			conf := fmt.Sprintf(`load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes auto;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 20000; }
stream {
    server { listen 127.0.0.1:6004; proxy_pass 127.0.0.1:%[2]d; }
%[3]s}
`, dir, tport, udpServer)
			cfg := filepath.Join(dir, "nginx.conf")
			if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
				return nil, err
			}
			stop, err := startProc("nginx", "-p", dir, "-c", cfg)
			if err == nil {
				waitPort("tcp", 6004)
			}
			return stop, err
		}},
	}
}

// logs receives the output of the programs the run starts.
var logs *os.File

// startProc starts a program in its own process group and returns a
// function that stops the group (SIGTERM, then SIGKILL after 5 s) and
// waits for it.
func startProc(name string, args ...string) (func(), error) {
	cmd := exec.Command(name, args...)
	if logs != nil {
		cmd.Stdout, cmd.Stderr = logs, logs
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	return func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}, nil
}

// waitPort waits up to 10 s until a socket listens on TCP port of
// 127.0.0.1, as /proc/net/tcp shows it. It neither connects (a test
// connection would go through to the target, and iperf3 counts it as a
// failed test) nor binds (which would race with the program starting).
func waitPort(_ string, port int) {
	want := fmt.Sprintf("0100007F:%04X", port)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 3 && f[1] == want && f[3] == "0A" { // TCP_LISTEN
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func portOr(port, def int) int {
	if port == 0 {
		return def
	}
	return port
}

// iperfTCP runs one bulk TCP test to port and returns the receiver's
// bits/s.
func iperfTCP(port int, d time.Duration) (float64, error) {
	port = portOr(port, iperfPort)
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := iperfJSON(&r, d, "-c", "127.0.0.1", "-p", fmt.Sprint(port), "-t", fmt.Sprint(int(d.Seconds()))); err != nil {
		return 0, err
	}
	if r.Error != "" {
		return 0, errors.New(r.Error)
	}
	return r.End.SumReceived.BitsPerSecond, nil
}

// iperfUDP runs one UDP test at unlimited rate and returns the goodput
// (bits/s received) and the loss in percent.
func iperfUDP(port int, d time.Duration) (float64, float64, error) {
	port = portOr(port, iperfPort)
	var r struct {
		End struct {
			Sum struct {
				BitsPerSecond float64 `json:"bits_per_second"`
				LostPercent   float64 `json:"lost_percent"`
			} `json:"sum"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := iperfJSON(&r, d, "-c", "127.0.0.1", "-p", fmt.Sprint(port), "-u", "-b", "0", "-l", "1400", "-t", fmt.Sprint(int(d.Seconds()))); err != nil {
		return 0, 0, err
	}
	if r.Error != "" {
		return 0, 0, errors.New(r.Error)
	}
	// iperf3's UDP "sum" is the receiver's view in 3.12: bits/s of what
	// arrived and the loss.
	g := r.End.SumReceived.BitsPerSecond
	if g == 0 {
		g = r.End.Sum.BitsPerSecond * (1 - r.End.Sum.LostPercent/100)
	}
	return g, r.End.Sum.LostPercent, nil
}

// iperfJSON runs iperf3 --json with a hard time limit and decodes its
// report into v.
func iperfJSON(v any, d time.Duration, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "iperf3", append(args, "--json", "--connect-timeout", "5000")...).Output()
	if err != nil && len(out) == 0 {
		return err
	}
	return json.Unmarshal(out, v)
}

// shortConns runs the short-connection client against port.
func shortConns(self string, port, workers int, d time.Duration) (float64, error) {
	port = portOr(port, shortPort)
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, self, "client", "-addr", fmt.Sprintf("127.0.0.1:%d", port),
		"-workers", fmt.Sprint(workers), "-duration", d.String()).Output()
	if err != nil {
		return 0, err
	}
	var r map[string]float64
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, err
	}
	if r["ok"] == 0 || r["failed"] > r["ok"]/100 {
		return 0, fmt.Errorf("%v of %v connections failed", r["failed"], r["ok"]+r["failed"])
	}
	return r["conns_per_sec"], nil
}

// interleave measures every peer once per repetition, in turn, so that a
// slow spell of the shared machine hits every peer alike rather than one.
// Each peer is started before its measurement and stopped after it.
func interleave(ps []peer, reps int, udp bool, tport int, measure func(peer)) {
	for range reps {
		for _, p := range ps {
			stop, err := p.start(tport, udp)
			if err != nil {
				log.Printf("%s: %v (skipped)", p.name, err)
				continue
			}
			measure(p)
			stop()
		}
	}
}

// medians returns the median of each peer's values and logs them all.
func medians(vals map[string][]float64, what, unit string) map[string]float64 {
	res := map[string]float64{}
	for _, name := range []string{"direct", "lbkit", "iocopy", "haproxy", "nginx"} {
		if vs, ok := vals[name]; ok {
			res[name] = median(vs)
			log.Printf("%s %-8s %.3f %s", what, name, vs, unit)
		}
	}
	return res
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return s[len(s)/2]
}

// table prints a markdown table of results with each one's ratio to the
// others that matter.
func table(out func(string, ...any), title, unit string, res map[string]float64) {
	out("")
	out("## %s", title)
	out("")
	out("| path | %s | lbkit ÷ this |", unit)
	out("|---|---:|---:|")
	for _, name := range []string{"direct", "lbkit", "iocopy", "haproxy", "nginx"} {
		v, ok := res[name]
		if !ok {
			continue
		}
		ratio := "—"
		if v > 0 && name != "lbkit" {
			ratio = fmt.Sprintf("%.2f×", res["lbkit"]/v)
		}
		out("| %s | %s | %s |", name, fmtNum(v), ratio)
	}
}

func fmtNum(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func fmtMap(m map[string]float64) string {
	var parts []string
	for _, name := range []string{"direct", "lbkit", "nginx"} {
		if v, ok := m[name]; ok {
			parts = append(parts, fmt.Sprintf("%s %.2f", name, v))
		}
	}
	return strings.Join(parts, ", ")
}
