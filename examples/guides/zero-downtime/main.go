package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/lbkit/lbkit/lb"
)

// drainDelay is the group's deregistration delay, short for the
// demonstration; the default is 300 s.
const drainDelay = 2 * time.Second

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
	v1a, err := startEcho("v1-a")
	if err != nil {
		return err
	}
	defer v1a.Close()
	v1b, err := startEcho("v1-b")
	if err != nil {
		return err
	}
	defer v1b.Close()
	v2a, err := startEcho("v2-a")
	if err != nil {
		return err
	}
	defer v2a.Close()

	events := make(chan lb.HealthEvent, 16)
	l, err := lb.New(
		lb.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		lb.WithHooks(lb.Hooks{HealthChange: func(e lb.HealthEvent) { events <- e }}),
		lb.WithListener("app", lb.TCP, "127.0.0.1:0", lb.WithForwardTo("app")),
		lb.WithTargetGroup("app", lb.TCP,
			lb.WithTarget(v1a.Addr().String(), lb.WithTargetID("v1-a")),
			lb.WithTarget(v1b.Addr().String(), lb.WithTargetID("v1-b")),
			lb.WithHealthCheck(lb.HealthCheck{Interval: 500 * time.Millisecond, Timeout: 400 * time.Millisecond}),
			lb.WithDeregistrationDelay(drainDelay),
		),
	)
	if err != nil {
		return err
	}
	if err := l.Start(); err != nil {
		return err
	}
	defer l.Close()
	front, _ := l.Addr("app")
	if err := waitServing(events, "v1-a", "v1-b"); err != nil {
		return err
	}
	fmt.Fprintf(out, "version 1 serving; new connections: %s\n", spread(front.String(), 4))

	// Two long-lived client connections, one on each old target.
	long := map[string]net.Conn{}
	for len(long) < 2 {
		c, err := net.Dial("tcp", front.String())
		if err != nil {
			return err
		}
		defer c.Close()
		name, err := ask(c)
		if err != nil {
			return err
		}
		if long[name] != nil {
			c.Close()
			continue
		}
		long[name] = c
	}
	fmt.Fprintln(out, "two long-lived connections open, on v1-a and v1-b")

	// 1. Register the new version. It gets traffic once its first health
	// check passes.
	if err := l.AddTarget("app", v2a.Addr().String(), lb.WithTargetID("v2-a")); err != nil {
		return err
	}
	if err := waitServing(events, "v2-a"); err != nil {
		return err
	}
	fmt.Fprintf(out, "1. AddTarget v2-a; once healthy, new connections: %s\n", spread(front.String(), 6))

	// 2. Stop new traffic to the old targets: weight 0. Established
	// connections continue.
	for _, id := range []string{"v1-a", "v1-b"} {
		if err := l.SetWeight("app", id, 0); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "2. SetWeight v1-a and v1-b to 0; new connections: %s; long-lived ones still answer: %s\n",
		spread(front.String(), 4), answers(long))
	fmt.Fprintf(out, "   Diagnose on v1-a: %s\n", strings.Join(targetReasons(l, "v1-a"), "; "))

	// 3. Deregister them. Their established connections continue for the
	// deregistration delay.
	removed := time.Now()
	for _, id := range []string{"v1-a", "v1-b"} {
		if err := l.RemoveTarget("app", id); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "3. RemoveTarget v1-a and v1-b (delay %s); long-lived ones still answer: %s\n", drainDelay, answers(long))
	fmt.Fprintf(out, "   Diagnose on v1-a: %s\n", strings.Join(targetReasons(l, "v1-a"), "; "))

	// The client on v1-b finishes by itself; the one on v1-a is still open
	// when the delay ends, and is reset then.
	long["v1-b"].Close()
	c := long["v1-a"]
	_ = c.SetReadDeadline(time.Now().Add(drainDelay + 10*time.Second))
	_, err = c.Read(make([]byte, 1))
	fmt.Fprintf(out, "   the connection on v1-a ended %ds+ after RemoveTarget: %v\n", int(time.Since(removed)/time.Second), errText(err))
	if err := waitTargets(l, []string{"v2-a"}); err != nil {
		return err
	}
	ts := l.Stats().Listeners[0].TCP
	fmt.Fprintf(out, "4. after the delay the group holds: v2-a; new connections: %s; TCPStats.DrainResets: %d\n",
		spread(front.String(), 3), ts.DrainResets)

	if !serve {
		return nil
	}
	host, port, _ := net.SplitHostPort(front.String())
	fmt.Fprintf(out, "\nServing until Ctrl-C. Try:\n  echo hello | nc -q1 %s %s\n", host, port)
	<-ctx.Done()
	return nil
}

// spread opens n connections and lists the targets that answered.
func spread(addr string, n int) string {
	var names []string
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			names = append(names, "error")
			continue
		}
		name, err := ask(c)
		c.Close()
		if err != nil {
			name = "error"
		}
		names = append(names, name)
	}
	return strings.Join(names, " ")
}

// answers asks every long-lived connection, in name order.
func answers(conns map[string]net.Conn) string {
	var got []string
	for _, name := range slices.Sorted(maps.Keys(conns)) {
		a, err := ask(conns[name])
		if err != nil {
			a = errText(err)
		}
		got = append(got, a)
	}
	return strings.Join(got, " ")
}

// ask sends a line on c and returns the name of the target that answered.
func ask(c net.Conn) (string, error) {
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return "", err
	}
	if _, err := fmt.Fprintln(c, "hello"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	name, _, _ := strings.Cut(line, ":")
	return name, err
}

// targetReasons returns what Diagnose says about target id, without the
// time of day.
func targetReasons(l *lb.LoadBalancer, id string) []string {
	for _, g := range l.Diagnose(lb.Query{}).Groups {
		for _, t := range g.Targets {
			if t.ID == id {
				return t.Reasons
			}
		}
	}
	return nil
}

// waitTargets waits until the group holds exactly the targets ids.
func waitTargets(l *lb.LoadBalancer, ids []string) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		var got []string
		for _, t := range l.Stats().Groups[0].Targets {
			got = append(got, t.ID)
		}
		if slices.Equal(got, ids) {
			return nil
		}
		select {
		case <-tick.C:
		case <-deadline:
			return fmt.Errorf("the group holds %v, want %v", got, ids)
		}
	}
}

// waitServing waits until every target of ids has turned serving.
func waitServing(events <-chan lb.HealthEvent, ids ...string) error {
	left := map[string]bool{}
	for _, id := range ids {
		left[id] = true
	}
	for len(left) > 0 {
		select {
		case e := <-events:
			if e.Serving {
				delete(left, e.Target)
			}
		case <-time.After(10 * time.Second):
			return errors.New("no health change within 10s")
		}
	}
	return nil
}

func errText(err error) string {
	if err == nil {
		return "no error"
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// startEcho starts a TCP target that answers every line with "<name>: <line>".
func startEcho(name string) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s := bufio.NewScanner(c)
				for s.Scan() {
					fmt.Fprintf(c, "%s: %s\n", name, s.Text())
				}
			}()
		}
	}()
	return ln, nil
}
