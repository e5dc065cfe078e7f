package lb

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// reasons returns every reason of a diagnosis, flattened, for matching.
func reasons(d Diagnosis) string {
	var all []string
	all = append(all, d.Problems...)
	for _, l := range d.Listeners {
		all = append(all, l.Reasons...)
	}
	for _, g := range d.Groups {
		all = append(all, g.Reasons...)
		for _, t := range g.Targets {
			all = append(all, t.Reasons...)
		}
	}
	return strings.Join(all, "\n")
}

func targetDiag(t *testing.T, d Diagnosis, group, id string) TargetDiagnosis {
	t.Helper()
	g, _ := d.Group(group)
	x, ok := g.Target(id)
	if !ok {
		t.Fatalf("no target %s/%s in the diagnosis", group, id)
	}
	return x
}

func TestDiagnoseHealthy(t *testing.T) {
	a := newEchoTarget(t, "a")
	l := startLB(t,
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", TCP, WithTarget(a.addr, WithTargetID("a")), WithHealthCheck(fastHealth)),
	)
	waitServing(t, l, "app", 1)
	d := l.Diagnose(Query{})
	assert.True(t, d.OK, d.String())
	assert.Empty(t, d.Problems)
	assert.True(t, targetDiag(t, d, "app", "a").OK)
	assert.Contains(t, d.String(), "OK: traffic can reach targets")
	assert.Contains(t, d.String(), "health check: tcp on the traffic port, every 40ms, timeout 30ms, healthy after 1, unhealthy after 1")
}

func TestDiagnoseNoListenerOnPort(t *testing.T) {
	a := newEchoTarget(t, "a")
	l := startLB(t,
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", TCP, WithTarget(a.addr), WithoutHealthCheck()),
	)
	free := portOf(mustListenClose(t))
	d := l.Diagnose(Query{Port: free})
	assert.False(t, d.OK)
	require.NotEmpty(t, d.Problems)
	assert.Contains(t, d.Problems[0], "no listener on port")
	assert.Contains(t, d.Problems[0], "listeners: tcp 127.0.0.1:")
}

func mustListenClose(t *testing.T) net.Addr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln.Close()
	return ln.Addr()
}

func TestDiagnoseClientDenied(t *testing.T) {
	a := newEchoTarget(t, "a")
	l := startLB(t,
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app"), WithAllow("10.0.0.0/8"), WithDeny("10.1.0.0/16")),
		WithTargetGroup("app", TCP, WithTarget(a.addr), WithoutHealthCheck()),
	)
	port := portOf(mustAddr(t, l, "tcp"))
	d := l.Diagnose(Query{Client: netip.MustParseAddr("10.1.2.3"), Port: port})
	assert.False(t, d.OK)
	require.Len(t, d.Listeners, 1)
	assert.False(t, d.Listeners[0].ClientAllowed)
	assert.Contains(t, reasons(d), "client 10.1.2.3 is denied by the access control (allow 10.0.0.0/8; deny 10.1.0.0/16)")

	ok := l.Diagnose(Query{Client: netip.MustParseAddr("10.2.0.1"), Port: port})
	assert.True(t, ok.OK, ok.String())

	// And the client (127.0.0.1, outside 10.0.0.0/8) really is refused.
	requireRefused(t, mustAddr(t, l, "tcp").String())
	assert.Equal(t, uint64(1), l.Stats().Listeners[0].TCP.Denied)
}

// requireRefused checks that a connection through addr is refused: reset
// during connect, or closed before any answer.
func requireRefused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("hello\n"))
	_, err = c.Read(make([]byte, 1))
	require.Error(t, err, "the connection was served")
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the connection hung instead of being refused")
}

func mustAddr(t *testing.T, l *LoadBalancer, name string) net.Addr {
	t.Helper()
	a, ok := l.Addr(name)
	require.True(t, ok)
	return a
}

func TestDiagnoseGroupNotAttached(t *testing.T) {
	a := newEchoTarget(t, "a")
	l := startLB(t,
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", TCP, WithTarget(a.addr), WithoutHealthCheck()),
		WithTargetGroup("orphan", TCP, WithTarget(a.addr), WithoutHealthCheck()),
	)
	d := l.Diagnose(Query{})
	assert.Contains(t, reasons(d), "not attached to any listener: no traffic is forwarded to it")
}

func TestDiagnoseUnhealthyWithReason(t *testing.T) {
	down := closedAddr(t)
	l := startLB(t,
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", TCP, WithTarget(down, WithTargetID("down")), WithHealthCheck(fastHealth)),
	)
	require.Eventually(t, func() bool {
		return len(targetDiag(t, l.Diagnose(Query{}), "app", "down").Health.Results) >= 2
	}, 10*time.Second, 5*time.Millisecond)
	d := l.Diagnose(Query{})
	td := targetDiag(t, d, "app", "down")
	assert.False(t, td.OK)
	require.NotEmpty(t, td.Reasons)
	assert.Contains(t, td.Reasons[0], "unhealthy: connection refused")
	assert.Contains(t, td.Reasons[0], "last checks:")
	assert.False(t, td.Health.Results[0].OK)
	assert.Equal(t, "connection refused", td.Health.Results[0].Reason)
	assert.Contains(t, reasons(d), `target group "app" has no target that can receive traffic`)
	assert.Contains(t, d.String(), "NOT receiving traffic")
}

func TestDiagnoseWeightDrainEjection(t *testing.T) {
	a, b, c := newEchoTarget(t, "a"), newEchoTarget(t, "b"), newEchoTarget(t, "c")
	l := startLB(t,
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", TCP, WithTarget(a.addr, WithTargetID("a"), WithWeight(0)), WithTarget(b.addr, WithTargetID("b")), WithTarget(c.addr, WithTargetID("c")),
			WithoutHealthCheck(), WithDeregistrationDelay(time.Hour), WithPassiveEjection(2, time.Hour, 50)),
	)
	require.NoError(t, l.RemoveTarget("app", "b"))
	l.mu.Lock()
	up := l.groups["app"].up()
	l.mu.Unlock()
	for range 2 {
		up.OnResult("c", errors.New("connection reset by peer"))
	}
	require.Eventually(t, func() bool { return !targetDiag(t, l.Diagnose(Query{}), "app", "c").OK }, 10*time.Second, 5*time.Millisecond)
	d := l.Diagnose(Query{})
	assert.Contains(t, targetDiag(t, d, "app", "a").Reasons, "weight 0: no new traffic; established connections continue")
	assert.Contains(t, strings.Join(targetDiag(t, d, "app", "b").Reasons, "\n"), "deregistered, draining until")
	assert.Contains(t, strings.Join(targetDiag(t, d, "app", "c").Reasons, "\n"), "ejected by passive checks until")
	assert.Contains(t, strings.Join(targetDiag(t, d, "app", "c").Reasons, "\n"), "2 consecutive failures")
	assert.False(t, d.OK)
}

// TestDiagnoseQuotedReasons checks the reasons TargetDiagnosis.Reasons's
// doc comment quotes against those Diagnose gives (numbers and the text
// after "…" aside), so that the comment cannot drift from the code.
func TestDiagnoseQuotedReasons(t *testing.T) {
	a, b, c := newEchoTarget(t, "a"), newEchoTarget(t, "b"), newEchoTarget(t, "c")
	l := startLB(t,
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", TCP, WithTarget(a.addr, WithTargetID("a"), WithWeight(0)), WithTarget(b.addr, WithTargetID("b")), WithTarget(c.addr, WithTargetID("c")),
			WithoutHealthCheck(), WithDeregistrationDelay(time.Hour), WithPassiveEjection(2, time.Hour, 50)),
		WithTargetGroup("hc", TCP, WithTarget(closedAddr(t), WithTargetID("down")), WithHealthCheck(HealthCheck{Interval: 20 * time.Millisecond, Timeout: 10 * time.Millisecond})),
	)
	require.NoError(t, l.RemoveTarget("app", "b"))
	l.mu.Lock()
	up := l.groups["app"].up()
	l.mu.Unlock()
	for range 2 {
		up.OnResult("c", errors.New("connection reset by peer"))
	}
	require.Eventually(t, func() bool {
		d := l.Diagnose(Query{})
		return !targetDiag(t, d, "app", "c").OK && targetDiag(t, d, "hc", "down").Health.Failures >= 3
	}, 10*time.Second, 5*time.Millisecond)
	var produced []string
	for _, g := range l.Diagnose(Query{}).Groups {
		for _, td := range g.Targets {
			produced = append(produced, td.Reasons...)
		}
	}

	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "diagnose.go", nil, parser.ParseComments|parser.SkipObjectResolution)
	require.NoError(t, err)
	var doc string
	ast.Inspect(f, func(n ast.Node) bool {
		if fl, ok := n.(*ast.Field); ok && len(fl.Names) == 1 && fl.Names[0].Name == "Reasons" && fl.Doc != nil {
			doc = strings.Join(strings.Fields(fl.Doc.Text()), " ")
		}
		return true
	})
	quotes := regexp.MustCompile(`"([^"]+)"`).FindAllStringSubmatch(doc, -1)
	require.Len(t, quotes, 4, "TargetDiagnosis.Reasons's doc: %s", doc)
	number := regexp.MustCompile(`\d+`) // times and counts vary
	for _, q := range quotes {
		prefix, _, _ := strings.Cut(q[1], "…")
		re := regexp.MustCompile("^" + number.ReplaceAllString(regexp.QuoteMeta(prefix), `\d+`))
		assert.True(t, slices.ContainsFunc(produced, re.MatchString), "the doc quotes %q, which Diagnose does not give: %q", q[1], produced)
	}
}

func TestDiagnoseFlowTableFull(t *testing.T) {
	a := newEchoTarget(t, "a")
	l := startLB(t,
		WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", TCP, WithTarget(a.addr), WithoutHealthCheck()),
		WithMaxFlows(1),
	)
	front := mustAddr(t, l, "tcp").String()
	held, err := net.Dial("tcp", front)
	require.NoError(t, err)
	defer held.Close()
	ask(t, held, "x")
	requireRefused(t, front)
	d := l.Diagnose(Query{})
	assert.True(t, d.Flows.Full)
	assert.Equal(t, uint64(1), d.Flows.Rejected)
	assert.Contains(t, reasons(d), "the flow table is full (1 of 1 flows)")
}

func TestDiagnoseNotRunning(t *testing.T) {
	l, err := New(WithListener("tcp", TCP, "127.0.0.1:0", WithForwardTo("app")), WithTargetGroup("app", TCP, WithTarget("127.0.0.1:1")))
	require.NoError(t, err)
	d := l.Diagnose(Query{})
	assert.False(t, d.OK)
	assert.Equal(t, []string{"the load balancer is not running"}, d.Problems)
}

// TestLookups checks the lookups of Stats and Diagnosis by name.
func TestLookups(t *testing.T) {
	a := newEchoTarget(t, "a")
	l := startLB(t,
		WithListener("front", TCP, "127.0.0.1:0", WithForwardTo("app")),
		WithTargetGroup("app", TCP, WithTarget(a.addr, WithTargetID("a")), WithoutHealthCheck()),
	)
	st := l.Stats()
	ls, ok := st.Listener("front")
	require.True(t, ok)
	assert.Equal(t, "front", ls.Name)
	_, ok = st.Listener("back")
	assert.False(t, ok)
	gs, ok := st.Group("app")
	require.True(t, ok)
	ts, ok := gs.Target("a")
	require.True(t, ok)
	assert.Equal(t, a.addr, ts.Addr)
	_, ok = gs.Target("b")
	assert.False(t, ok)

	d := l.Diagnose(Query{})
	ld, ok := d.Listener("front")
	require.True(t, ok)
	assert.Equal(t, []string{"app"}, ld.Groups)
	_, ok = d.Listener("back")
	assert.False(t, ok)
	gd, ok := d.Group("app")
	require.True(t, ok)
	td, ok := gd.Target("a")
	require.True(t, ok)
	assert.True(t, td.OK)
	_, ok = d.Group("nope")
	assert.False(t, ok)
}
