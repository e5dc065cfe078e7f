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
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lbkit/lbkit/lb"
)

func main() {
	serve := flag.Bool("serve", false, "keep serving after the walk-through, until Ctrl-C")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *serve); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, out io.Writer, serve bool) error {
	var ts targets
	defer ts.close()
	refused, err := closedPort() // nothing listens there
	if err != nil {
		return err
	}
	ok, err := ts.http(http.StatusOK)
	if err != nil {
		return err
	}
	failing, err := ts.http(http.StatusServiceUnavailable)
	if err != nil {
		return err
	}
	slow, err := ts.httpHang()
	if err != nil {
		return err
	}
	echo1, err := ts.echo("db-1")
	if err != nil {
		return err
	}
	echo2, err := ts.echo("db-2")
	if err != nil {
		return err
	}
	udpTarget, err := ts.udpEcho()
	if err != nil {
		return err
	}

	rejected := newRejections()
	check := lb.HealthCheck{Interval: 500 * time.Millisecond, Timeout: 400 * time.Millisecond, UnhealthyThreshold: 2}
	l, err := lb.New(
		lb.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		lb.WithHooks(lb.Hooks{FlowRejected: rejected.add}),
		lb.WithMaxFlows(1), // a tiny flow table, to fill it below
		// An HTTP listener whose targets are all unusable, each for
		// another reason.
		lb.WithListener("web", lb.HTTP, "127.0.0.1:0", lb.WithForwardTo("web")),
		lb.WithTargetGroup("web", lb.HTTP,
			lb.WithTarget(refused, lb.WithTargetID("web-1")),
			lb.WithTarget(failing, lb.WithTargetID("web-2")),
			lb.WithTarget(slow, lb.WithTargetID("web-3")),
			lb.WithTarget(ok, lb.WithTargetID("web-4"), lb.WithWeight(0)),
			lb.WithHealthCheck(check),
		),
		// A TCP listener open to 10.0.0.0/8 only.
		lb.WithListener("admin", lb.TCP, "127.0.0.1:0", lb.WithForwardTo("admin"), lb.WithAllow("10.0.0.0/8")),
		lb.WithTargetGroup("admin", lb.TCP, lb.WithTarget(echo1, lb.WithTargetID("admin-1")), lb.WithHealthCheck(check)),
		// A TCP listener with two good targets.
		lb.WithListener("db", lb.TCP, "127.0.0.1:0", lb.WithForwardTo("db")),
		lb.WithTargetGroup("db", lb.TCP,
			lb.WithTarget(echo1, lb.WithTargetID("db-1")),
			lb.WithTarget(echo2, lb.WithTargetID("db-2")),
			lb.WithHealthCheck(check),
			lb.WithDeregistrationDelay(time.Hour),
		),
		// A UDP listener whose target's TCP health port is closed.
		lb.WithListener("dns", lb.UDP, "127.0.0.1:0", lb.WithForwardTo("dns")),
		lb.WithTargetGroup("dns", lb.UDP, lb.WithTarget(udpTarget, lb.WithTargetID("dns-1")),
			lb.WithHealthCheck(lb.HealthCheck{Protocol: lb.TCP, Port: portOf(refused), Interval: check.Interval, Timeout: check.Timeout})),
		// A target group no listener forwards to.
		lb.WithTargetGroup("orphan", lb.TCP, lb.WithTarget(echo2, lb.WithTargetID("orphan-1")), lb.WithHealthCheck(check)),
	)
	if err != nil {
		return err
	}
	if err := l.Start(); err != nil {
		return err
	}
	defer l.Close()
	if err := waitChecked(l, 2); err != nil {
		return err
	}
	addr := func(name string) string { a, _ := l.Addr(name); return a.String() }
	port := func(name string) int { return portOf(addr(name)) }
	localhost := netip.MustParseAddr("127.0.0.1")

	step := func(n int, question string) { fmt.Fprintf(out, "\n%d. %s\n", n, question) }
	sees := func(format string, a ...any) { fmt.Fprintf(out, "   client sees:  "+format+"\n", a...) }
	says := func(lines ...string) {
		for _, s := range lines {
			fmt.Fprintf(out, "   lbkit says:   %s\n", s)
		}
	}

	step(1, "Is there a listener on that port?")
	wrongPort := portOf(refused)
	_, err = net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", wrongPort), 5*time.Second)
	sees("dial port %d: %s", wrongPort, errText(err))
	says(l.Diagnose(lb.Query{Port: wrongPort}).Problems[0])

	step(2, "Is the client allowed by the listener's access control?")
	sees("%s", tcpAsk(addr("admin")))
	says(l.Diagnose(lb.Query{Client: localhost, Port: port("admin")}).Problems...)
	says("FlowRejected hook: reason " + rejected.wait("admin"))

	step(3, "Is the target group attached to a listener?")
	says("target group \"orphan\": " + strings.Join(group(l, "orphan").Reasons, "; "))

	step(4, "Is any target healthy, and if not, why?")
	status, err := httpStatus("http://" + addr("web") + "/")
	if err != nil {
		return err
	}
	sees("GET http://%s/: %s", addr("web"), status)
	says(l.Diagnose(lb.Query{Port: port("web")}).Problems...)
	for _, t := range group(l, "web").Targets {
		says(fmt.Sprintf("target %s: %s", t.ID, firstClause(t.Reasons[0])))
	}

	step(5, "Is the target draining?")
	if err := l.RemoveTarget("db", "db-2"); err != nil {
		return err
	}
	for _, t := range group(l, "db").Targets {
		if t.ID == "db-2" {
			says("target db-2: " + strings.Join(t.Reasons, "; "))
		}
	}

	step(6, "UDP: no answer at all (\"connection timed out\")")
	sees("%s", udpAsk(addr("dns")))
	says(l.Diagnose(lb.Query{Port: port("dns")}).Problems...)
	says("FlowRejected hook: reason " + rejected.wait("dns"))

	step(7, "Is the flow table full?")
	held, err := net.Dial("tcp", addr("db"))
	if err != nil {
		return err
	}
	defer held.Close()
	if _, err := askLine(held); err != nil { // now it is established: one flow
		return err
	}
	sees("a second connection: %s", tcpAsk(addr("db")))
	says(l.Diagnose(lb.Query{}).Problems[0])
	says("FlowRejected hook: reason " + rejected.wait("db"))
	fs := l.Stats().Flows
	says(fmt.Sprintf("Stats().Flows.TCP: ActiveFlowCount %d, RejectedFlowCount %d", fs.TCP.ActiveFlowCount, fs.TCP.RejectedFlowCount))

	fmt.Fprintf(out, "\nThe whole diagnosis, as Diagnose(lb.Query{}).String() prints it:\n%s", l.Diagnose(lb.Query{}))
	if !serve {
		return nil
	}
	fmt.Fprintf(out, "\nServing until Ctrl-C. Try:\n  curl -i http://%s/\n  nc %s\n", addr("web"), strings.Replace(addr("admin"), ":", " ", 1))
	<-ctx.Done()
	return nil
}

// group returns the diagnosis of one target group.
func group(l *lb.LoadBalancer, name string) lb.GroupDiagnosis {
	for _, g := range l.Diagnose(lb.Query{}).Groups {
		if g.Name == name {
			return g
		}
	}
	return lb.GroupDiagnosis{}
}

// waitChecked waits until every target has had n health checks, so that
// Diagnose has reasons to give.
func waitChecked(l *lb.LoadBalancer, n int) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		done := true
		for _, g := range l.Diagnose(lb.Query{}).Groups {
			for _, t := range g.Targets {
				done = done && len(t.Health.Results) >= n
			}
		}
		if done {
			return nil
		}
		select {
		case <-tick.C:
		case <-deadline:
			return errors.New("health checks did not run within 10s")
		}
	}
}

// firstClause cuts a target's reason before its list of last checks, whose
// times change from run to run.
func firstClause(reason string) string {
	r, _, _ := strings.Cut(reason, "; last checks")
	return r
}

// tcpAsk connects to addr, sends a line and says what came back.
func tcpAsk(addr string) string {
	// A refused connection is reset right after the handshake: on
	// loopback the reset often arrives before Dial returns.
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return errText(err)
	}
	defer c.Close()
	line, err := askLine(c)
	if err != nil {
		return errText(err)
	}
	return "answer " + line
}

// askLine sends a line on c and reads the answer.
func askLine(c net.Conn) (string, error) {
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return "", err
	}
	if _, err := fmt.Fprintln(c, "hello"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// udpAsk sends a datagram to addr and waits half a second for an answer.
func udpAsk(addr string) string {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "dial: " + errText(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("hello")); err != nil {
		return "write: " + errText(err)
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return "no answer within 500ms: " + errText(err)
	}
	return "answer " + string(buf[:n])
}

func httpStatus(url string) (string, error) {
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	return resp.Status, nil
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

func portOf(addr string) int {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return 0
	}
	return int(ap.Port())
}

// closedPort returns an address on 127.0.0.1 where nothing listens.
func closedPort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// rejections collects the FlowRejected hook's events by listener.
type rejections struct {
	mu     sync.Mutex // guards byName
	byName map[string]chan string
}

func newRejections() *rejections { return &rejections{byName: map[string]chan string{}} }

func (r *rejections) ch(listener string) chan string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.byName[listener]
	if c == nil {
		c = make(chan string, 64)
		r.byName[listener] = c
	}
	return c
}

// add is the hook: it must not block, so a full channel drops the event.
func (r *rejections) add(e lb.FlowRejectedEvent) {
	select {
	case r.ch(e.Listener) <- e.Reason:
	default:
	}
}

// wait returns the reason of the listener's next refusal.
func (r *rejections) wait(listener string) string {
	select {
	case reason := <-r.ch(listener):
		return reason
	case <-time.After(5 * time.Second):
		return "(none within 5s)"
	}
}

// targets are the demonstration's servers.
type targets struct{ closers []io.Closer }

func (ts *targets) close() {
	for _, c := range ts.closers {
		c.Close()
	}
}

// http starts an HTTP target that answers every request with code.
func (ts *targets) http(code int) (string, error) {
	return ts.serveHTTP(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }))
}

// httpHang starts an HTTP target that never answers.
func (ts *targets) httpHang() (string, error) {
	return ts.serveHTTP(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
}

func (ts *targets) serveHTTP(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	ts.closers = append(ts.closers, srv)
	return ln.Addr().String(), nil
}

// echo starts a TCP target that answers every line with "<name>: <line>".
func (ts *targets) echo(name string) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	ts.closers = append(ts.closers, ln)
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
	return ln.Addr().String(), nil
}

// udpEcho starts a UDP target that answers every datagram.
func (ts *targets) udpEcho() (string, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	ts.closers = append(ts.closers, pc)
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	return pc.LocalAddr().String(), nil
}
