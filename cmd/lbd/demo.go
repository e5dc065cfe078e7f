package main

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"

	"github.com/lbkit/lbkit/config"
	"github.com/lbkit/lbkit/lb"
)

// demoTarget is a small server standing in for a real target: an HTTP
// server that answers with its id, a TCP echo or a UDP echo that prefix
// what they send back with it. A UDP demo target also accepts TCP
// connections on the same port, so a group can check it over TCP.
type demoTarget struct {
	id   string
	addr string // bound, host:port
	srv  *http.Server
	ln   net.Listener
	pc   net.PacketConn
	wg   sync.WaitGroup // its serving goroutines
}

// startDemoTargets starts a demo target for every target of f's groups;
// they must all be on loopback. A target on port 0 (which a file cannot
// say, but a File made in code can: the tests) gets a free port, for both
// TCP and UDP when it is a UDP target, and its address in f is replaced by
// the one bound. The returned function stops them.
func startDemoTargets(f *config.File, log *slog.Logger, socks lb.Sockets) (stop func(), err error) {
	var started []*demoTarget
	stop = func() {
		for _, t := range started {
			t.stop()
		}
	}
	for gi := range f.TargetGroups {
		g := &f.TargetGroups[gi]
		for ti := range g.Targets {
			tc := &g.Targets[ti]
			id := tc.ID
			if id == "" {
				id = tc.Address
			}
			t, err := startDemoTarget(socks, g.Protocol, id, tc.Address)
			if err != nil {
				stop()
				return nil, fmt.Errorf("demo target %s of group %s: %w", id, g.Name, err)
			}
			started = append(started, t)
			tc.Address = t.addr
			log.Info("demo target started", "group", g.Name, "target", id, "protocol", g.Protocol, "addr", t.addr)
		}
	}
	return stop, nil
}

// startDemoTarget starts one demo target speaking proto on addr, a
// loopback address (port 0 picks one), with sockets from socks (so that a
// binary upgrade hands them over too).
func startDemoTarget(socks lb.Sockets, proto, id, addr string) (*demoTarget, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() {
		return nil, fmt.Errorf("address %q: demo targets run on loopback IP addresses only", addr)
	}
	t := &demoTarget{id: id}
	switch proto {
	case "http":
		if t.ln, err = socks.Listen("demo target "+id, "tcp", addr); err != nil {
			return nil, err
		}
		t.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, id) })}
		t.wg.Go(func() { t.srv.Serve(t.ln) })
	case "tcp":
		if t.ln, err = socks.Listen("demo target "+id, "tcp", addr); err != nil {
			return nil, err
		}
		t.wg.Go(func() { t.echoTCP() })
	case "udp":
		// The UDP side, and a TCP side for health checks on the same
		// port. With port 0 the port the kernel gives the UDP side may be
		// taken for TCP: try a few.
		for try := 0; ; try++ {
			if t.pc, err = socks.ListenPacket("demo target "+id, "udp", addr); err != nil {
				return nil, err
			}
			if t.ln, err = socks.Listen("demo target "+id, "tcp", t.pc.LocalAddr().String()); err == nil {
				break
			}
			t.pc.Close()
			if ap.Port() != 0 || try == 20 {
				return nil, fmt.Errorf("the TCP side of a UDP demo target: %w", err)
			}
		}
		t.wg.Go(func() { t.echoUDP() })
		t.wg.Go(func() { t.acceptAndClose() })
	default:
		return nil, fmt.Errorf("no demo target speaks %s (http, tcp and udp do)", proto)
	}
	if t.pc != nil {
		t.addr = t.pc.LocalAddr().String()
	} else {
		t.addr = t.ln.Addr().String()
	}
	return t, nil
}

// echoTCP echoes each line back prefixed with the target's id.
func (t *demoTarget) echoTCP() {
	var conns sync.WaitGroup
	defer conns.Wait()
	var mu sync.Mutex // guards open
	open := map[net.Conn]bool{}
	defer func() {
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		mu.Lock()
		open[c] = true
		mu.Unlock()
		conns.Go(func() {
			defer func() {
				mu.Lock()
				delete(open, c)
				mu.Unlock()
				c.Close()
			}()
			s := bufio.NewScanner(c)
			for s.Scan() {
				if _, err := fmt.Fprintf(c, "%s: %s\n", t.id, s.Text()); err != nil {
					return
				}
			}
		})
	}
}

// echoUDP echoes each datagram back prefixed with the target's id.
func (t *demoTarget) echoUDP() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := t.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		t.pc.WriteTo(append([]byte(t.id+": "), buf[:n]...), from)
	}
}

// acceptAndClose is a UDP demo target's TCP side: connections open, which
// is what a TCP health check asks.
func (t *demoTarget) acceptAndClose() {
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// stop closes the target and waits for its goroutines.
func (t *demoTarget) stop() {
	if t.srv != nil {
		t.srv.Close()
	}
	if t.ln != nil {
		t.ln.Close()
	}
	if t.pc != nil {
		t.pc.Close()
	}
	t.wg.Wait()
}
