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
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/lbkit/lbkit/lb"
)

func main() {
	httpAddr := flag.String("http", "127.0.0.1:8080", "HTTP listener address")
	tcpAddr := flag.String("tcp", "127.0.0.1:9090", "TCP listener address")
	udpAddr := flag.String("udp", "127.0.0.1:9053", "UDP listener address")
	demo := flag.Bool("demo", false, "print the tour and exit instead of serving until Ctrl-C")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *httpAddr, *tcpAddr, *udpAddr, *demo); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, out io.Writer, httpAddr, tcpAddr, udpAddr string, demo bool) error {
	// Three demo targets, each serving HTTP, a TCP echo and a UDP echo.
	var targets []*demoTarget
	for _, name := range []string{"web-1", "web-2", "web-3"} {
		t, err := startTarget(name)
		if err != nil {
			return err
		}
		defer t.stop()
		targets = append(targets, t)
	}

	healthy := make(chan lb.HealthEvent, 16)
	quick := lb.HealthCheck{Interval: 500 * time.Millisecond, Timeout: 250 * time.Millisecond, HealthyThreshold: 2, UnhealthyThreshold: 2}
	web := []lb.GroupOption{lb.WithHealthCheck(quick), lb.WithStickiness(lb.Stickiness{Kind: lb.Cookie})}
	echo := []lb.GroupOption{lb.WithHealthCheck(quick)}
	dns := []lb.GroupOption{lb.WithoutHealthCheck()} // UDP checks use ICMP, which needs privileges
	for _, t := range targets {
		web = append(web, lb.WithTarget(t.http, lb.WithTargetID(t.name)))
		echo = append(echo, lb.WithTarget(t.tcp, lb.WithTargetID(t.name)))
		dns = append(dns, lb.WithTarget(t.udp, lb.WithTargetID(t.name)))
	}
	l, err := lb.New(
		lb.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		lb.WithHooks(lb.Hooks{HealthChange: func(e lb.HealthEvent) { healthy <- e }}),
		lb.WithListener("http", lb.HTTP, httpAddr, lb.WithForwardTo("web")),
		lb.WithListener("tcp", lb.TCP, tcpAddr, lb.WithForwardTo("echo")),
		lb.WithListener("udp", lb.UDP, udpAddr, lb.WithForwardTo("dns")),
		lb.WithTargetGroup("web", lb.HTTP, web...),
		lb.WithTargetGroup("echo", lb.TCP, echo...),
		lb.WithTargetGroup("dns", lb.UDP, dns...),
	)
	if err != nil {
		return err
	}
	if err := l.Start(); err != nil {
		return fmt.Errorf("%w (choose other addresses with -http, -tcp and -udp)", err)
	}
	defer l.Close()
	addr := func(name string) string { a, _ := l.Addr(name); return a.String() }

	fmt.Fprintln(out, "waiting for the first health checks to pass...")
	for serving := 0; serving < 6; {
		select {
		case e := <-healthy:
			if e.Serving {
				serving++
			}
		case <-time.After(10 * time.Second):
			return errors.New("targets did not turn healthy")
		}
	}

	fmt.Fprintf(out, "\nHTTP  %s, round-robin: %s\n", addr("http"), spread(9, func() (string, error) { return get(http.DefaultClient, addr("http")) }))
	jar, _ := cookiejar.New(nil)
	sticky := &http.Client{Jar: jar}
	fmt.Fprintf(out, "HTTP  with a cookie jar (sticky):  %s\n", spread(5, func() (string, error) { return get(sticky, addr("http")) }))
	fmt.Fprintf(out, "TCP   %s, round-robin: %s\n", addr("tcp"), spread(6, func() (string, error) { return echoTCP(addr("tcp")) }))
	fmt.Fprintf(out, "UDP   %s, a flow per client:  %s\n", addr("udp"), spread(6, func() (string, error) { return echoUDP(addr("udp")) }))

	fmt.Fprintln(out, "\nstopping web-2's HTTP server...")
	targets[1].stopHTTP()
	for {
		e := <-healthy
		if e.Group == "web" && e.Target == "web-2" && !e.Serving {
			fmt.Fprintf(out, "health change: %s/%s is no longer serving: %s\n", e.Group, e.Target, e.Reason)
			break
		}
	}
	fmt.Fprintf(out, "HTTP  now:            %s\n", spread(6, func() (string, error) { return get(http.DefaultClient, addr("http")) }))
	fmt.Fprintf(out, "HTTP  sticky session: %s\n\n", spread(3, func() (string, error) { return get(sticky, addr("http")) }))

	fmt.Fprintln(out, "Diagnose() says:")
	fmt.Fprint(out, indent(l.Diagnose(lb.Query{}).String()))
	http.DefaultClient.CloseIdleConnections()
	sticky.CloseIdleConnections()
	if demo {
		return nil
	}

	fmt.Fprintf(out, "\nServing until Ctrl-C. Try:\n")
	fmt.Fprintf(out, "  curl http://%s/\n", addr("http"))
	fmt.Fprintf(out, "  curl -c /tmp/jar -b /tmp/jar http://%s/   # sticky: always the same target\n", addr("http"))
	fmt.Fprintf(out, "  echo hello | nc -q1 %s\n", strings.Replace(addr("tcp"), ":", " ", 1))
	fmt.Fprintf(out, "  echo hello | nc -u -w1 %s\n", strings.Replace(addr("udp"), ":", " ", 1))
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return l.Shutdown(sctx)
}

// spread runs f n times and summarises which target answered.
func spread(n int, f func() (string, error)) string {
	counts := map[string]int{}
	var seq []string
	for range n {
		name, err := f()
		if err != nil {
			name = "error: " + err.Error()
		}
		counts[name]++
		seq = append(seq, name)
	}
	names := make([]string, 0, len(counts))
	for k := range counts {
		names = append(names, k)
	}
	sort.Strings(names)
	var parts []string
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s×%d", k, counts[k]))
	}
	return strings.Join(seq, " ") + "  (" + strings.Join(parts, ", ") + ")"
}

func get(c *http.Client, addr string) (string, error) {
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return strings.TrimSpace(string(b)), err
}

func echoTCP(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintln(c, "hello")
	line, err := bufio.NewReader(c).ReadString('\n')
	name, _, _ := strings.Cut(line, ":")
	return name, err
}

func echoUDP(addr string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("hello"))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	name, _, _ := strings.Cut(string(buf[:n]), ":")
	return name, err
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n  ") + "\n"
}

// demoTarget is one demo backend: an HTTP server, a TCP echo and a UDP echo
// on 127.0.0.1, each answering with the target's name.
type demoTarget struct {
	name           string
	http, tcp, udp string
	srv            *http.Server
	tcpLn          net.Listener
	udpPC          net.PacketConn
}

func startTarget(name string) (*demoTarget, error) {
	t := &demoTarget{name: name}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t.http = hl.Addr().String()
	t.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, name) })}
	go t.srv.Serve(hl)

	if t.tcpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	t.tcp = t.tcpLn.Addr().String()
	go func() {
		for {
			c, err := t.tcpLn.Accept()
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

	if t.udpPC, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	t.udp = t.udpPC.LocalAddr().String()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := t.udpPC.ReadFrom(buf)
			if err != nil {
				return
			}
			t.udpPC.WriteTo([]byte(name+": "+string(buf[:n])), from)
		}
	}()
	return t, nil
}

func (t *demoTarget) stopHTTP() { t.srv.Close() }

func (t *demoTarget) stop() {
	t.srv.Close()
	t.tcpLn.Close()
	t.udpPC.Close()
}
