package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lbkit/lbkit/lb"
)

func main() {
	serve := flag.Bool("serve", false, "keep serving after the demonstration, until Ctrl-C")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *serve); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, out io.Writer, serve bool) error {
	// Two UDP targets, a on 127.0.0.1 and b on ::1, answering with their name.
	a, err := startUDPEcho("a", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := startUDPEcho("b", "[::1]:0")
	if err != nil {
		return err
	}
	defer b.Close()
	// Their TCP health endpoints: one port number on both hosts.
	health, err := listenHealthPair()
	if err != nil {
		return err
	}
	defer health.close()

	events := make(chan lb.HealthEvent, 16)
	l, err := lb.New(
		lb.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		lb.WithHooks(lb.Hooks{HealthChange: func(e lb.HealthEvent) { events <- e }}),
		lb.WithListener("dns", lb.UDP, "127.0.0.1:0", lb.WithForwardTo("dns")),
		lb.WithTargetGroup("dns", lb.UDP,
			lb.WithTarget(a.LocalAddr().String(), lb.WithTargetID("a")),
			lb.WithTarget(b.LocalAddr().String(), lb.WithTargetID("b")),
			// Check each target over TCP on the health port, not the
			// UDP service itself.
			lb.WithHealthCheck(lb.HealthCheck{
				Protocol:           lb.TCP,
				Port:               health.port,
				Interval:           500 * time.Millisecond,
				Timeout:            400 * time.Millisecond,
				HealthyThreshold:   2,
				UnhealthyThreshold: 3,
			}),
		),
	)
	if err != nil {
		return err
	}
	if err := l.Start(); err != nil {
		return err
	}
	defer l.Close()
	front, _ := l.Addr("dns")

	if err := waitServing(events, map[string]bool{"a": true, "b": true}); err != nil {
		return err
	}
	fmt.Fprintf(out, "health check: %s\n", l.Diagnose(lb.Query{}).Groups[0].HealthCheck)

	// Four clients, each its own socket and so its own flow.
	clients := make([]net.Conn, 4)
	for i := range clients {
		c, err := net.Dial("udp", front.String())
		if err != nil {
			return err
		}
		defer c.Close()
		clients[i] = c
	}
	ask := func(step string) error {
		var got []string
		for i, c := range clients {
			name, err := udpAsk(c, step)
			if err != nil {
				return fmt.Errorf("client %d: %w", i+1, err)
			}
			got = append(got, name)
		}
		fmt.Fprintf(out, "%-28s clients 1-4 answered by: %s\n", step+":", strings.Join(got, " "))
		return nil
	}
	if err := ask("both healthy"); err != nil {
		return err
	}

	// Target a's health endpoint stops; its UDP service still runs, but the
	// load balancer no longer trusts it.
	health.v4.Close()
	e, err := waitEvent(events, "a", false)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "health change: target %s serving=%v: %s\n", e.Target, e.Serving, e.Reason)
	if err := ask("a's health port down"); err != nil {
		return err
	}
	st := l.Stats().Listeners[0].UDP
	fmt.Fprintf(out, "flows moved to another target (UDPStats.Failovers): %d\n", st.Failovers)

	// a's health endpoint comes back on the same port.
	if health.v4, err = listenHealth(fmt.Sprintf("127.0.0.1:%d", health.port)); err != nil {
		return err
	}
	if e, err = waitEvent(events, "a", true); err != nil {
		return err
	}
	fmt.Fprintf(out, "health change: target %s serving=%v: %s\n", e.Target, e.Serving, e.Reason)
	if err := ask("a healthy again"); err != nil {
		return err
	}
	var fresh []string
	for range 2 {
		nc, err := net.Dial("udp", front.String())
		if err != nil {
			return err
		}
		name, err := udpAsk(nc, "new client")
		nc.Close()
		if err != nil {
			return err
		}
		fresh = append(fresh, name)
	}
	fmt.Fprintf(out, "%-28s answered by: %s\n", "two new clients:", strings.Join(fresh, " "))

	if !serve {
		return nil
	}
	host, port, _ := net.SplitHostPort(front.String())
	fmt.Fprintf(out, "\nServing until Ctrl-C. Try:\n  echo hello | nc -u -w1 %s %s\n", host, port)
	fmt.Fprintf(out, "Health endpoints: 127.0.0.1:%d and [::1]:%d\n", health.port, health.port)
	<-ctx.Done()
	return nil
}

// udpAsk sends msg on c and returns the answering target's name.
func udpAsk(c net.Conn, msg string) (string, error) {
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	name, _, _ := strings.Cut(string(buf[:n]), ":")
	return name, nil
}

// waitServing waits until every named target has turned serving.
func waitServing(events <-chan lb.HealthEvent, want map[string]bool) error {
	for len(want) > 0 {
		e, err := next(events)
		if err != nil {
			return err
		}
		if e.Serving {
			delete(want, e.Target)
		}
	}
	return nil
}

// waitEvent waits for target's change to serving.
func waitEvent(events <-chan lb.HealthEvent, target string, serving bool) (lb.HealthEvent, error) {
	for {
		e, err := next(events)
		if err != nil || e.Target == target && e.Serving == serving {
			return e, err
		}
	}
}

func next(events <-chan lb.HealthEvent) (lb.HealthEvent, error) {
	select {
	case e := <-events:
		return e, nil
	case <-time.After(10 * time.Second):
		return lb.HealthEvent{}, errors.New("no health change within 10s")
	}
}

// startUDPEcho starts a UDP service on addr that answers "<name>: <data>".
func startUDPEcho(name, addr string) (net.PacketConn, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(name+": "+string(buf[:n])), from)
		}
	}()
	return pc, nil
}

// healthPair is a TCP health endpoint on 127.0.0.1 and on ::1, on one port.
type healthPair struct {
	v4, v6 net.Listener
	port   int
}

func (h *healthPair) close() {
	h.v4.Close()
	h.v6.Close()
}

// listenHealthPair finds a port free on both 127.0.0.1 and ::1.
func listenHealthPair() (*healthPair, error) {
	for range 50 {
		v4, err := listenHealth("127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port := v4.Addr().(*net.TCPAddr).Port
		v6, err := listenHealth(fmt.Sprintf("[::1]:%d", port))
		if err != nil {
			v4.Close()
			continue
		}
		return &healthPair{v4: v4, v6: v6, port: port}, nil
	}
	return nil, errors.New("no port free on both 127.0.0.1 and ::1")
}

// listenHealth is a health endpoint: it accepts connections and closes them,
// which is all a TCP health check asks.
func listenHealth(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln, nil
}
