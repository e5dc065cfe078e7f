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
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/lb"
)

// clients is how many client addresses the demonstration plays.
const clients = 12

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
	ids := []string{"t1", "t2", "t3", "t4"}
	targets := map[string]*echoTarget{}
	defer func() {
		for _, t := range targets {
			t.close()
		}
	}()
	for _, id := range ids {
		t, err := startEcho(id, "127.0.0.1:0")
		if err != nil {
			return err
		}
		targets[id] = t
	}

	// Two nodes, configured alike except for the order of their targets,
	// which does not matter: the table is built from the targets sorted
	// by ID.
	events := make(chan lb.HealthEvent, 64)
	node := func(order []string) (*lb.LoadBalancer, error) {
		opts := []lb.GroupOption{
			lb.WithAlgorithm(balancer.SourceIPHash),
			lb.WithHealthCheck(lb.HealthCheck{Interval: 500 * time.Millisecond, Timeout: 400 * time.Millisecond, UnhealthyThreshold: 2, HealthyThreshold: 1}),
		}
		for _, id := range order {
			opts = append(opts, lb.WithTarget(targets[id].addr(), lb.WithTargetID(id)))
		}
		l, err := lb.New(
			lb.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
			lb.WithHooks(lb.Hooks{HealthChange: func(e lb.HealthEvent) { events <- e }}),
			// Behind an L4 balancer that sends the PROXY protocol:
			// trust it, and hash the client address it reports.
			lb.WithListener("app", lb.TCP, "127.0.0.1:0", lb.WithForwardTo("app"), lb.WithTrustedProxies("127.0.0.1")),
			lb.WithTargetGroup("app", lb.TCP, opts...),
		)
		if err != nil {
			return nil, err
		}
		return l, l.Start()
	}
	a, err := node([]string{"t1", "t2", "t3", "t4"})
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := node([]string{"t4", "t2", "t1", "t3"})
	if err != nil {
		return err
	}
	defer b.Close()
	if err := waitChanges(events, 2*len(ids), true); err != nil {
		return err
	}

	before, err := table(out, "every target healthy", a, b, nil)
	if err != nil {
		return err
	}

	// t2 goes down: both nodes' health checks see it.
	targets["t2"].close()
	if err := waitChanges(events, 2, false); err != nil {
		return err
	}
	if _, err := table(out, "t2 down", a, b, before); err != nil {
		return err
	}

	// t2 comes back on the same address.
	if targets["t2"], err = startEcho("t2", targets["t2"].addr()); err != nil {
		return err
	}
	if err := waitChanges(events, 2, true); err != nil {
		return err
	}
	if _, err := table(out, "t2 back", a, b, before); err != nil {
		return err
	}

	if !serve {
		return nil
	}
	fmt.Fprintf(out, "\nServing until Ctrl-C: node A on %s, node B on %s (both expect a PROXY header first).\n", addrOf(a), addrOf(b))
	fmt.Fprintf(out, "Try:\n  printf 'PROXY TCP4 192.0.2.1 192.0.2.254 40000 80\\r\\nhello\\n' | nc -q1 %s\n", strings.Replace(addrOf(a), ":", " ", 1))
	<-ctx.Done()
	return nil
}

// table sends one connection per client address through each node, prints
// which target answered, and returns node A's answers. With prev, it marks
// the clients whose target changed.
func table(out io.Writer, title string, a, b *lb.LoadBalancer, prev []string) ([]string, error) {
	fmt.Fprintf(out, "%s:\n  %-12s %-7s %s\n", title, "client", "node A", "node B")
	var got []string
	agree, moved := 0, 0
	for i := range clients {
		client := fmt.Sprintf("192.0.2.%d", i+1)
		ta, err := askAs(addrOf(a), client)
		if err != nil {
			return nil, err
		}
		tb, err := askAs(addrOf(b), client)
		if err != nil {
			return nil, err
		}
		note := ""
		if prev != nil && prev[i] != ta {
			note = "moved from " + prev[i]
			moved++
		}
		if ta == tb {
			agree++
		}
		fmt.Fprintln(out, strings.TrimRight(fmt.Sprintf("  %-12s %-7s %-7s %s", client, ta, tb, note), " "))
		got = append(got, ta)
	}
	fmt.Fprintf(out, "  the nodes agree on %d of %d clients", agree, clients)
	if prev != nil {
		fmt.Fprintf(out, "; %d on another target than in the first table", moved)
	}
	fmt.Fprintln(out)
	return got, nil
}

// askAs connects to a node as client (in a PROXY protocol v1 header), sends
// a line and returns the name of the target that answered.
func askAs(node, client string) (string, error) {
	c, err := net.DialTimeout("tcp", node, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return "", err
	}
	fmt.Fprintf(c, "PROXY TCP4 %s 192.0.2.254 40000 80\r\nhello\n", client)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	name, _, _ := strings.Cut(line, ":")
	return name, nil
}

func addrOf(l *lb.LoadBalancer) string {
	a, _ := l.Addr("app")
	return a.String()
}

// waitChanges waits for n health changes to serving (or not).
func waitChanges(events <-chan lb.HealthEvent, n int, serving bool) error {
	for n > 0 {
		select {
		case e := <-events:
			if e.Serving == serving {
				n--
			}
		case <-time.After(10 * time.Second):
			return errors.New("no health change within 10s")
		}
	}
	return nil
}

// echoTarget is a TCP target that answers every line with "<name>: <line>".
type echoTarget struct {
	ln net.Listener
}

func startEcho(name, addr string) (*echoTarget, error) {
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
			go func() {
				defer c.Close()
				s := bufio.NewScanner(c)
				for s.Scan() {
					fmt.Fprintf(c, "%s: %s\n", name, s.Text())
				}
			}()
		}
	}()
	return &echoTarget{ln: ln}, nil
}

func (t *echoTarget) addr() string { return t.ln.Addr().String() }
func (t *echoTarget) close()       { t.ln.Close() }
