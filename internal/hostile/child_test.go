package hostile

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/flowtable"
	"github.com/lbkit/lbkit/lb"
)

// childEnv carries the child's spec; its presence makes the test binary a
// child load balancer (see TestMain).
const childEnv = "LBKIT_HOSTILE_CHILD"

// spec is what a child load balancer is made of.
type spec struct {
	// NoFile is the child's RLIMIT_NOFILE (soft and hard), set before the
	// load balancer starts; 0 leaves it.
	NoFile uint64
	// Budget, if set, is lb.WithDescriptorBudget's argument (0: off);
	// nil leaves lb's default.
	Budget *int
	// UDPIdle and Unreplied, if set, are the UDP listener's idle timeout
	// and lb.WithUnrepliedTimeout's argument.
	UDPIdle, Unreplied time.Duration
	// HeaderTimeout and RequestTimeout, if set, bound TLS handshakes and
	// HTTP request headers, so that held connections stay held.
	HeaderTimeout, RequestTimeout time.Duration
	// CertPEM and KeyPEM are the TLS and HTTPS listeners' certificate.
	CertPEM, KeyPEM string
	// The targets' addresses.
	TCPTarget, HTTPTarget, UDPTarget string
}

// listenerNames are the child's listeners, one of each kind, and http twice:
// served by goroutines and by event loops (httploop).
var listenerNames = []string{"tcp", "tls", "http", "httploop", "https", "udp"}

// report is what a child says when asked.
type report struct {
	Problems    []string
	Limits      []string
	Listeners   map[string]listenerReport
	Flows       flowtable.Stats
	Descriptors lb.DescriptorStats
}

// listenerReport is one listener's part of a report.
type listenerReport struct {
	AcceptErrors  uint64
	AcceptFailing bool
	AcceptError   string
	// Refused counts refused clients by reason: descriptors,
	// source_limit, table_full, no_target.
	Refused map[string]uint64
	Reasons []string
}

// runChild is the child's main: it lowers its descriptor limit, starts the
// load balancer, prints the listeners' addresses as one JSON line and then
// answers "report" lines until "quit" or the end of its input.
func runChild(specJSON string) int {
	var sp spec
	if err := json.Unmarshal([]byte(specJSON), &sp); err != nil {
		fmt.Fprintln(os.Stderr, "child: spec:", err)
		return 2
	}
	if sp.NoFile > 0 {
		// Only here, in the child: the test binary keeps its limit.
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: sp.NoFile, Max: sp.NoFile}); err != nil {
			fmt.Fprintln(os.Stderr, "child: setrlimit:", err)
			return 2
		}
	}
	cert, err := tls.X509KeyPair([]byte(sp.CertPEM), []byte(sp.KeyPEM))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: certificate:", err)
		return 2
	}
	opts := []lb.Option{
		lb.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))),
		lb.WithListener("tcp", lb.TCP, "127.0.0.1:0", lb.WithForwardTo("echo"), lb.WithHeaderTimeout(sp.HeaderTimeout)),
		lb.WithListener("tls", lb.TLS, "127.0.0.1:0", lb.WithForwardTo("echo"), lb.WithCertificates(cert), lb.WithHeaderTimeout(sp.HeaderTimeout)),
		lb.WithListener("http", lb.HTTP, "127.0.0.1:0", lb.WithForwardTo("web"), lb.WithRequestTimeout(sp.RequestTimeout)),
		lb.WithListener("httploop", lb.HTTP, "127.0.0.1:0", lb.WithForwardTo("web"), lb.WithRequestTimeout(sp.RequestTimeout), lb.WithEventLoop()),
		lb.WithListener("https", lb.HTTPS, "127.0.0.1:0", lb.WithForwardTo("web"), lb.WithCertificates(cert), lb.WithRequestTimeout(sp.RequestTimeout)),
		lb.WithListener("udp", lb.UDP, "127.0.0.1:0", lb.WithForwardTo("dns"), lb.WithIdleTimeout(sp.UDPIdle)),
		lb.WithTargetGroup("echo", lb.TCP, lb.WithTarget(sp.TCPTarget), lb.WithoutHealthCheck()),
		lb.WithTargetGroup("web", lb.HTTP, lb.WithTarget(sp.HTTPTarget), lb.WithoutHealthCheck()),
		lb.WithTargetGroup("dns", lb.UDP, lb.WithTarget(sp.UDPTarget), lb.WithoutHealthCheck()),
	}
	if sp.Budget != nil {
		opts = append(opts, lb.WithDescriptorBudget(*sp.Budget))
	}
	if sp.Unreplied > 0 {
		opts = append(opts, lb.WithUnrepliedTimeout(sp.Unreplied))
	}
	l, err := lb.New(opts...)
	if err == nil {
		err = l.Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	defer l.Close()
	addrs := map[string]string{}
	for _, n := range listenerNames {
		a, _ := l.Addr(n)
		addrs[n] = a.String()
	}
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(addrs); err != nil {
		return 1
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "report":
			if err := out.Encode(reportOf(l)); err != nil {
				return 1
			}
		case "quit":
			return 0
		}
	}
	return 0
}

// reportOf reads a load balancer's Stats and Diagnose into a report.
func reportOf(l *lb.LoadBalancer) report {
	st := l.Stats()
	d := l.Diagnose(lb.Query{})
	r := report{Problems: d.Problems, Limits: d.Flows.Limits, Flows: st.Flows, Descriptors: st.Descriptors, Listeners: map[string]listenerReport{}}
	for _, ls := range st.Listeners {
		lr := listenerReport{AcceptErrors: ls.AcceptErrors, AcceptFailing: !ls.AcceptFailingSince.IsZero(), Refused: map[string]uint64{}}
		switch {
		case ls.TCP != nil:
			lr.Refused["descriptors"] = ls.TCP.RejectedDescriptors
			lr.Refused["source_limit"] = ls.TCP.RejectedSourceLimit
			lr.Refused["table_full"] = ls.TCP.RejectedTableFull
			lr.Refused["no_target"] = ls.TCP.NoTarget + ls.TCP.ConnectFailed
		case ls.UDP != nil:
			lr.Refused["descriptors"] = ls.UDP.RejectedDescriptors
			lr.Refused["source_limit"] = ls.UDP.RejectedSourceLimit
			lr.Refused["table_full"] = ls.UDP.RejectedTableFull
			lr.Refused["no_target"] = ls.UDP.NoTarget
		case ls.HTTP != nil:
			lr.Refused["descriptors"] = ls.HTTP.RejectedDescriptors
		}
		r.Listeners[ls.Name] = lr
	}
	for _, ld := range d.Listeners {
		lr := r.Listeners[ld.Name]
		lr.AcceptError, lr.Reasons = ld.AcceptError, ld.Reasons
		r.Listeners[ld.Name] = lr
	}
	return r
}

// child is a running child load balancer, seen from the test.
type child struct {
	t     *testing.T
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	mu    sync.Mutex // serialises requests
	addrs map[string]string
	logs  *logBuffer
	done  chan struct{} // closed when the child has exited
}

// logBuffer keeps the child's log (its standard error).
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startChild starts a child load balancer of sp, with the parent's targets
// and certificate, and stops it when the test ends (its log is shown if
// the test failed).
func startChild(t *testing.T, env *world, sp spec) *child {
	t.Helper()
	sp.TCPTarget, sp.HTTPTarget, sp.UDPTarget = env.tcpTarget, env.httpTarget, env.udpTarget
	sp.CertPEM, sp.KeyPEM = env.certPEM, env.keyPEM
	b, err := json.Marshal(sp)
	require.NoError(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(b))
	c := &child{t: t, cmd: cmd, logs: &logBuffer{}, done: make(chan struct{})}
	cmd.Stderr = c.logs
	c.in, err = cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	c.out = bufio.NewReader(stdout)
	require.NoError(t, cmd.Start())
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(c.stop)
	first := make(chan error, 1)
	go func() { first <- c.read(&c.addrs) }()
	select {
	case err := <-first:
		require.NoError(t, err, "the child's addresses; its log:\n%s", c.logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("the child did not start in 60 s; its log:\n%s", c.logs)
	}
	return c
}

func (c *child) read(v any) error {
	line, err := c.out.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("reading the child: %w", err)
	}
	return json.Unmarshal(line, v)
}

// report asks the child for its report.
func (c *child) report() report {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := io.WriteString(c.in, "report\n")
	require.NoError(c.t, err, "the child's log:\n%s", c.logs)
	var r report
	got := make(chan error, 1)
	go func() { got <- c.read(&r) }()
	select {
	case err := <-got:
		require.NoError(c.t, err, "the child's log:\n%s", c.logs)
	case <-time.After(30 * time.Second):
		c.t.Fatalf("the child did not report in 30 s; its log:\n%s", c.logs)
	}
	return r
}

// waitReport asks for reports until cond holds, for at most d, and returns
// the last one.
func (c *child) waitReport(what string, d time.Duration, cond func(report) bool) report {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		r := c.report()
		if cond(r) {
			return r
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("waited %v for %s; last report: %+v\nthe child's log:\n%s", d, what, r, c.logs)
		}
		time.Sleep(20 * time.Millisecond) // polling a report, not synchronising
	}
}

// stop ends the child: "quit", then a kill if it does not go.
func (c *child) stop() {
	c.mu.Lock()
	_, _ = io.WriteString(c.in, "quit\n")
	c.in.Close()
	c.mu.Unlock()
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	if c.t.Failed() {
		c.t.Logf("the child's log:\n%s", c.logs)
	}
}
