package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/flowtable"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:7000", "address clients connect to")
	targets := flag.String("targets", "127.0.0.1:7001,127.0.0.1:7002", "comma-separated target addresses")
	idle := flag.Duration("idle", 350*time.Second, "idle timeout of a connection")
	demo := flag.Bool("demo", false, "run two echo targets, send traffic, print what happened, exit")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *listen, strings.Split(*targets, ","), *idle, *demo); err != nil {
		log.Fatal(err)
	}
}

// proxy is the whole custom proxy: a balancer, a flow table, a listener.
type proxy struct {
	bal   *balancer.Balancer
	flows *flowtable.Table[*conn]
	wg    sync.WaitGroup
}

// conn is one proxied connection, the flow table's value.
type conn struct{ client, target net.Conn }

func (c *conn) close() {
	c.client.Close()
	if c.target != nil {
		c.target.Close()
	}
}

func newProxy(targets []string, idle time.Duration) (*proxy, error) {
	var ts []balancer.Target
	for _, t := range targets {
		ts = append(ts, balancer.Target{ID: t, Addr: t, Weight: 1})
	}
	bal, err := balancer.New(balancer.WithTargets(ts...), balancer.WithAlgorithm(balancer.LeastConnections))
	if err != nil {
		return nil, err
	}
	flows, err := flowtable.New[*conn](
		flowtable.WithMaxFlows(10000),
		flowtable.WithMaxFlowsPerSource(100),
		flowtable.WithIdleTimeout(flowtable.TCP, idle),
		flowtable.WithOnExpire(func(_ flowtable.Key, c *conn) { c.close() }),
	)
	if err != nil {
		return nil, err
	}
	return &proxy{bal: bal, flows: flows}, nil
}

func (p *proxy) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.handle(c) })
	}
}

func (p *proxy) handle(client net.Conn) {
	key := flowtable.Key{Proto: flowtable.TCP, Src: addrPort(client.RemoteAddr()), Dst: addrPort(client.LocalAddr())}
	pick, err := p.bal.Pick(balancer.PickInfo{Source: key.Src.Addr()})
	if err != nil {
		client.Close()
		return
	}
	defer pick.Done()
	target, err := net.DialTimeout("tcp", pick.Target.Addr, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	// A flow enters the table once established, whole: the expiry callback
	// may close it from another goroutine at any moment after.
	c := &conn{client: client, target: target}
	defer c.close()
	if _, _, err := p.flows.LoadOrCreate(key, func() (*conn, error) { return c, nil }); err != nil {
		return // table full, or this client has too many connections
	}
	defer p.flows.Delete(key)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(target, client)
	go pipe(client, target)
	<-done
	<-done
}

func addrPort(a net.Addr) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func run(ctx context.Context, out io.Writer, listen string, targets []string, idle time.Duration, demo bool) error {
	if demo {
		targets = nil
		for _, name := range []string{"one", "two"} {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			defer ln.Close()
			go echo(ln, name)
			targets = append(targets, ln.Addr().String())
		}
		listen = "127.0.0.1:0"
	}
	p, err := newProxy(targets, idle)
	if err != nil {
		return err
	}
	defer p.flows.Close()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	go p.serve(ln)
	fmt.Fprintf(out, "custom proxy on %s → %s\n", ln.Addr(), strings.Join(targets, ", "))

	if demo {
		// Four connections held open at once: least-connections spreads them.
		var held []net.Conn
		for range 4 {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				return err
			}
			defer c.Close()
			fmt.Fprintln(c, "hi")
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				return err
			}
			fmt.Fprint(out, line)
			held = append(held, c)
		}
		st := p.flows.Stats()
		fmt.Fprintf(out, "flows: new %d, active %d\n", st.TCP.NewFlowCount, st.TCP.ActiveFlowCount)
		for _, c := range held {
			c.Close()
		}
		ln.Close()
		p.wg.Wait()
		return nil
	}
	<-ctx.Done()
	ln.Close()
	p.flows.Range(func(_ flowtable.Key, c *conn) bool { c.close(); return true })
	p.wg.Wait()
	return nil
}

func echo(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		go func() {
			defer c.Close()
			s := bufio.NewScanner(c)
			for s.Scan() {
				fmt.Fprintf(c, "%s: %s\n", name, s.Text())
			}
		}()
	}
}
