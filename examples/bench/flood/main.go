package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	log.SetFlags(0)
	if len(os.Args) < 2 {
		log.Fatal("usage: flood targets|attack|hold [flags]")
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "targets":
		err = targets(args)
	case "attack":
		err = attack(args)
	case "hold":
		err = holdCmd(args)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// loopback checks that addr is a loopback host:port: the tool attacks
// nothing else.
func loopback(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() {
		return fmt.Errorf("%q: flood talks to loopback addresses (127.0.0.0/8, ::1) only", addr)
	}
	return nil
}

// sourceList parses -sources: addresses and ranges of loopback addresses,
// "127.0.0.2", "127.0.0.2,127.0.0.3", "127.1.0.0-127.1.23.255".
func sourceList(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := netip.ParseAddr(lo)
		if err != nil || !a.IsLoopback() {
			return nil, fmt.Errorf("-sources %q: %q is not a loopback address", s, lo)
		}
		b := a
		if isRange {
			if b, err = netip.ParseAddr(hi); err != nil || !b.IsLoopback() || b.Less(a) {
				return nil, fmt.Errorf("-sources %q: bad range %q", s, part)
			}
		}
		for x := a; ; x = x.Next() {
			out = append(out, x)
			if x == b || len(out) > 1<<20 {
				break
			}
		}
	}
	return out, nil
}

func untilSignal() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

// targets serves the load balancer's targets until a signal.
func targets(args []string) error {
	fs := flag.NewFlagSet("targets", flag.ExitOnError)
	tcpAddr := fs.String("tcp", "127.0.0.1:19091", "TCP echo")
	httpAddr := fs.String("http", "127.0.0.1:19081", "HTTP server answering ok")
	udpAddr := fs.String("udp", "127.0.0.1:19054", "UDP echo (and TCP accept-and-close on the same port)")
	fs.Parse(args)
	for _, a := range []string{*tcpAddr, *httpAddr, *udpAddr} {
		if err := loopback(a); err != nil {
			return err
		}
	}
	ctx, stop := untilSignal()
	defer stop()
	var wg sync.WaitGroup
	echo, err := net.Listen("tcp", *tcpAddr)
	if err != nil {
		return err
	}
	// A plain read-and-write echo: io.Copy from a socket to itself would
	// splice, and hold a pipe (two more descriptors) per idle connection.
	wg.Go(func() {
		serveTCP(echo, func(c net.Conn) {
			buf := make([]byte, 512)
			io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, buf)
		})
	})
	hl, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }), ReadHeaderTimeout: time.Minute}
	wg.Go(func() { srv.Serve(hl) })
	pc, err := net.ListenPacket("udp", *udpAddr)
	if err != nil {
		return err
	}
	_ = pc.(*net.UDPConn).SetReadBuffer(8 << 20)
	wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err == nil {
				pc.WriteTo(buf[:n], from)
			}
		}
	})
	hc, err := net.Listen("tcp", *udpAddr)
	if err != nil {
		return err
	}
	wg.Go(func() { serveTCP(hc, func(net.Conn) {}) })
	log.Printf("targets: tcp echo %s, http %s, udp echo %s", *tcpAddr, *httpAddr, *udpAddr)
	<-ctx.Done()
	echo.Close()
	hl.Close()
	srv.Close()
	pc.Close()
	hc.Close()
	wg.Wait()
	return nil
}

// serveTCP runs h on every connection of ln until ln closes.
func serveTCP(ln net.Listener, h func(net.Conn)) {
	var conns sync.WaitGroup
	defer conns.Wait()
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	defer func() {
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // out of descriptors: as net/http
			continue
		}
		mu.Lock()
		open[c] = true
		mu.Unlock()
		conns.Go(func() {
			h(c)
			c.Close()
			mu.Lock()
			delete(open, c)
			mu.Unlock()
		})
	}
}

var clientTLS = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the load balancer's own test certificate

// normal is the normal clients' tally.
type normal struct {
	mu      sync.Mutex
	ok, bad map[string]int
	errs    map[string]map[string]int
}

func (n *normal) reset() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.ok, n.bad, n.errs = map[string]int{}, map[string]int{}, map[string]map[string]int{}
}

func (n *normal) add(kind string, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err == nil {
		n.ok[kind]++
		return
	}
	n.bad[kind]++
	if n.errs[kind] == nil {
		n.errs[kind] = map[string]int{}
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:] // the cause, without the addresses
	}
	n.errs[kind][msg]++
}

// probes are one request of each kind of listener.
type probes struct {
	tcp, tls, http, https, udp string
}

func dial(addr string) (net.Conn, error) {
	return (&net.Dialer{Timeout: 2 * time.Second}).Dial("tcp", addr)
}

func echoOnce(addr string, useTLS bool) error {
	c, err := dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if useTLS {
		tc := tls.Client(c, clientTLS)
		if err := tc.Handshake(); err != nil {
			return err
		}
		c = tc
	}
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasSuffix(line, "ping\n") {
		return fmt.Errorf("echo answered %q", line)
	}
	return nil
}

var httpClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS, DisableKeepAlives: true}}

func getOnce(url string) error {
	resp, err := httpClient.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// udpAsker is a UDP client on one socket: one flow, as a real client's.
type udpAsker struct {
	c   *net.UDPConn
	n   int
	buf []byte
}

func newUDPAsker(addr string) (*udpAsker, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	c, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return nil, err
	}
	return &udpAsker{c: c, buf: make([]byte, 2048)}, nil
}

func (u *udpAsker) ask(wait time.Duration) error {
	u.n++
	msg := fmt.Sprintf("normal %d", u.n)
	if _, err := u.c.Write([]byte(msg)); err != nil {
		return err
	}
	deadline := time.Now().Add(wait)
	for {
		_ = u.c.SetReadDeadline(deadline)
		n, err := u.c.Read(u.buf)
		if err != nil {
			return err
		}
		if strings.HasSuffix(string(u.buf[:n]), msg) {
			return nil
		}
	}
}

func attack(args []string) error {
	fs := flag.NewFlagSet("attack", flag.ExitOnError)
	mode := fs.String("mode", "udp", "udp (a flood of new UDP flows) or tcp-hold (TCP connections held open)")
	sourcesFlag := fs.String("sources", "127.0.0.2", "the attack's source addresses: a, a,b or a-b (loopback)")
	ports := fs.Int("ports", 30000, "udp: distinct source ports per source address, cycled (0: the kernel's choice)")
	basePort := fs.Int("base-port", 20000, "udp: the first source port")
	rate := fs.Int("rate", 6000, "udp: datagrams a second")
	conns := fs.Int("conns", 10000, "tcp-hold: connections")
	duration := fs.Duration("duration", 30*time.Second, "the attack's length (tcp-hold: how long the connections are held)")
	warmup := fs.Duration("warmup", 3*time.Second, "normal clients alone before the attack (the UDP one becomes two-way)")
	var p probes
	fs.StringVar(&p.tcp, "tcp", "", "the TCP echo listener")
	fs.StringVar(&p.http, "http", "", "the HTTP listener (host:port)")
	fs.StringVar(&p.udp, "udp", "", "the UDP echo listener")
	fs.StringVar(&p.tls, "tls", "", "the TLS echo listener, checked afterwards")
	fs.StringVar(&p.https, "https", "", "the HTTPS listener (host:port), checked afterwards")
	target := fs.String("target", "", "the attacked listener (default: -udp for udp, -tcp for tcp-hold)")
	fs.Parse(args)
	if *duration > 10*time.Minute || *duration <= 0 {
		return errors.New("-duration must be between 0 and 10m")
	}
	sources, err := sourceList(*sourcesFlag)
	if err != nil {
		return err
	}
	if *target == "" {
		*target = map[string]string{"udp": p.udp, "tcp-hold": p.tcp}[*mode]
	}
	for _, a := range []string{*target, p.tcp, p.http, p.udp, p.tls, p.https} {
		if a != "" {
			if err := loopback(a); err != nil {
				return err
			}
		}
	}

	// Normal clients.
	var tally normal
	tally.reset()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	kinds := map[string]func() error{}
	if p.tcp != "" {
		kinds["tcp"] = func() error { return echoOnce(p.tcp, false) }
	}
	if p.http != "" {
		kinds["http"] = func() error { return getOnce("http://" + p.http + "/") }
	}
	if p.udp != "" {
		u, err := newUDPAsker(p.udp)
		if err != nil {
			return err
		}
		defer u.c.Close()
		kinds["udp"] = func() error { return u.ask(time.Second) }
	}
	for kind, once := range kinds {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				tally.add(kind, once())
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	time.Sleep(*warmup)
	tally.reset()

	start := time.Now()
	var report string
	switch *mode {
	case "udp":
		report, err = udpFlood(*target, sources, *ports, *basePort, *rate, *duration)
	case "tcp-hold":
		report, err = tcpHold(*target, sources, *conns, *duration)
	default:
		err = fmt.Errorf("-mode %q is not udp or tcp-hold", *mode)
	}
	close(stop)
	wg.Wait()
	if err != nil {
		return err
	}
	attackTime := time.Since(start)
	fmt.Printf("attack: %s, %s in %.1f s\n", *mode, report, attackTime.Seconds())
	tally.mu.Lock()
	for _, kind := range []string{"tcp", "http", "udp"} {
		ok, bad := tally.ok[kind], tally.bad[kind]
		if ok+bad == 0 {
			continue
		}
		fmt.Printf("normal %s clients during the attack: %d of %d succeeded (%.2f %%)", kind, ok, ok+bad, 100*float64(ok)/float64(ok+bad))
		if len(tally.errs[kind]) > 0 {
			fmt.Printf("; failures: %v", tally.errs[kind])
		}
		fmt.Println()
	}
	tally.mu.Unlock()

	// Every listener serves afterwards.
	after := time.Now()
	failed := false
	for _, l := range []struct {
		name, addr string
		once       func() error
	}{
		{"tcp", p.tcp, func() error { return echoOnce(p.tcp, false) }},
		{"tls", p.tls, func() error { return echoOnce(p.tls, true) }},
		{"http", p.http, func() error { return getOnce("http://" + p.http + "/") }},
		{"https", p.https, func() error { return getOnce("https://" + p.https + "/") }},
		{"udp", p.udp, func() error {
			u, err := newUDPAsker(p.udp)
			if err != nil {
				return err
			}
			defer u.c.Close()
			return u.ask(time.Second)
		}},
	} {
		if l.addr == "" {
			continue
		}
		var err error
		for time.Since(after) < 30*time.Second {
			if err = l.once(); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			failed = true
			fmt.Printf("listener %s does NOT serve 30 s after the attack: %v\n", l.name, err)
		} else {
			fmt.Printf("listener %s serves %.2f s after the attack ended\n", l.name, time.Since(after).Seconds())
		}
	}
	if failed {
		return errors.New("a listener does not serve after the attack")
	}
	return nil
}

// udpFlood sends datagrams at rate a second for d, each from its own socket
// bound to the next source address and port.
func udpFlood(target string, sources []netip.Addr, ports, basePort, rate int, d time.Duration) (string, error) {
	raddr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return "", err
	}
	total := int(d.Seconds() * float64(rate))
	var sent, bindFailed int
	start := time.Now()
	for i := range total {
		if ahead := time.Duration(i)*time.Second/time.Duration(rate) - time.Since(start); ahead > time.Millisecond {
			time.Sleep(ahead)
		}
		src := sources[i%len(sources)]
		port := 0
		if ports > 0 {
			port = basePort + (i/len(sources))%ports
		}
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, uint16(port))), raddr)
		if err != nil {
			bindFailed++
			continue
		}
		if _, err := c.Write([]byte("flood")); err == nil {
			sent++
		}
		c.Close()
	}
	distinct := len(sources) * max(ports, 1)
	if ports == 0 {
		distinct = len(sources)
	}
	return fmt.Sprintf("%d datagrams sent (%d not: source busy) to %s from %d source addresses × %d ports (%d distinct sources) at %d/s",
		sent, bindFailed, target, len(sources), ports, min(distinct, total), rate), nil
}

// Ways a held connection is used before it idles.
const (
	useNone = iota // opened only
	usePing        // a line sent and its echo read
	useGet         // an HTTP/1.1 GET sent and its answer read: a kept-alive connection
)

// holdConns opens n connections to target from the sources in turn, with
// 64 dialers at once, each used as use says and then left idle.
func holdConns(target string, sources []netip.Addr, n int, use int) ([]net.Conn, int) {
	conns := make([]net.Conn, n)
	var next, failed atomic.Int64
	var emu sync.Mutex
	errs := map[string]int{}
	defer func() {
		if len(errs) > 0 {
			fmt.Printf("connection failures: %v\n", errs)
		}
	}()
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: sources[i%len(sources)].AsSlice()}}
				c, err := d.Dial("tcp", target)
				if err == nil && use == useGet {
					_ = c.SetDeadline(time.Now().Add(5 * time.Second))
					if _, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: flood\r\n\r\n"); err == nil {
						var resp *http.Response
						if resp, err = http.ReadResponse(bufio.NewReader(c), nil); err == nil {
							_, err = io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
						}
					}
					_ = c.SetDeadline(time.Time{})
					if err != nil {
						c.Close()
						err = fmt.Errorf("get: %w", err)
					}
				} else if err == nil && use == usePing {
					_ = c.SetDeadline(time.Now().Add(5 * time.Second))
					if _, err = io.WriteString(c, "ping\n"); err == nil {
						var b [5]byte
						_, err = io.ReadFull(c, b[:])
					}
					_ = c.SetDeadline(time.Time{})
					if err != nil {
						c.Close()
						err = fmt.Errorf("echo: %w", err)
					}
				} else if err != nil {
					err = fmt.Errorf("connect: %w", err)
				}
				if err != nil {
					failed.Add(1)
					msg := err.Error()
					if j, k := strings.Index(msg, ": "), strings.LastIndex(msg, ": "); k > j {
						msg = msg[:j] + ": " + msg[k+2:] // "connect: cause" or "echo: cause"
					}
					emu.Lock()
					errs[msg]++
					emu.Unlock()
					continue
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	return conns, int(failed.Load())
}

// stillOpen counts the connections the other side has not closed or reset.
func stillOpen(conns []net.Conn) int {
	open := 0
	var b [1]byte
	for _, c := range conns {
		if c == nil {
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		_, err := c.Read(b[:])
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			open++
		}
	}
	return open
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

func tcpHold(target string, sources []netip.Addr, n int, d time.Duration) (string, error) {
	start := time.Now()
	conns, failed := holdConns(target, sources, n, useNone)
	opened := time.Since(start)
	time.Sleep(max(0, d-opened))
	open := stillOpen(conns)
	closeAll(conns)
	return fmt.Sprintf("%d connections to %s from %d source addresses opened in %.1f s (%d failed to connect), held; %d still open at the end (the rest reset by the load balancer)",
		n-failed, target, len(sources), opened.Seconds(), failed, open), nil
}

func holdCmd(args []string) error {
	fs := flag.NewFlagSet("hold", flag.ExitOnError)
	target := fs.String("target", "", "the listener")
	n := fs.Int("conns", 8000, "connections")
	sourcesFlag := fs.String("sources", "127.0.0.1", "source addresses: a, a,b or a-b (loopback)")
	hold := fs.Duration("for", 20*time.Second, "how long to hold them (at most 10m)")
	ready := fs.String("ready", "", "a file to create once every connection is open")
	ping := fs.Bool("ping", false, "each connection sends a line and reads its echo before it idles")
	get := fs.Bool("get", false, "each connection sends an HTTP/1.1 GET and reads its answer before it idles (a kept-alive connection)")
	fs.Parse(args)
	if err := loopback(*target); err != nil {
		return err
	}
	if *hold > 10*time.Minute {
		return errors.New("-for is at most 10m")
	}
	sources, err := sourceList(*sourcesFlag)
	if err != nil {
		return err
	}
	ctx, stop := untilSignal()
	defer stop()
	start := time.Now()
	use := useNone
	switch {
	case *ping && *get:
		return errors.New("hold: -ping and -get exclude each other")
	case *ping:
		use = usePing
	case *get:
		use = useGet
	}
	conns, failed := holdConns(*target, sources, *n, use)
	fmt.Printf("hold: %d connections to %s open in %.1f s (%d failed)\n", *n-failed, *target, time.Since(start).Seconds(), failed)
	if *ready != "" {
		os.WriteFile(*ready, nil, 0o600)
	}
	select {
	case <-time.After(*hold):
	case <-ctx.Done():
	}
	fmt.Printf("hold: %d still open at the end\n", stillOpen(conns))
	closeAll(conns)
	return nil
}
