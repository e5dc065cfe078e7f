package healthcheck

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// wait bounds every wait for an event in tests, so a broken test fails
// instead of hanging. It is never how long a test expects to wait.
const wait = 10 * time.Second

// withClock is the test-only option that sets the Monitor's clock.
func withClock(clk clock) Option { return func(c *config) { c.clock = clk } }

// fakeClock is a clock that moves only when the test advances it.
type fakeClock struct {
	mu     sync.Mutex // guards now and timers
	now    time.Time
	timers []*fakeTimer
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer() clockTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, ch: make(chan time.Time, 1)}
	c.timers = append(c.timers, t)
	return t
}

// Advance moves the clock forward and fires the timers that come due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		if t.armed && !t.at.After(c.now) {
			t.fire()
		}
	}
}

type fakeTimer struct {
	c     *fakeClock
	ch    chan time.Time
	at    time.Time // c.mu guards at and armed
	armed bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Reset(d time.Duration) {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.drain()
	t.at, t.armed = t.c.now.Add(d), true
	if d <= 0 {
		t.fire()
	}
}

func (t *fakeTimer) Stop() {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.armed = false
	t.drain()
}

func (t *fakeTimer) fire() { // c.mu is held
	t.armed = false
	select {
	case t.ch <- t.c.now:
	default:
	}
}

func (t *fakeTimer) drain() {
	select {
	case <-t.ch:
	default:
	}
}

// seqRand returns vals in order, then 0 forever. The Monitor calls it under
// its lock, so it needs none of its own.
func seqRand(vals ...uint64) func() uint64 {
	return func() uint64 {
		if len(vals) == 0 {
			return 0
		}
		v := vals[0]
		vals = vals[1:]
		return v
	}
}

// scripted is a Checker whose result per target the test sets; targets it
// was told nothing about pass. It counts calls.
type scripted struct {
	mu    sync.Mutex // guards errs and calls
	errs  map[string]error
	calls map[string]int
}

func newScripted() *scripted {
	return &scripted{errs: map[string]error{}, calls: map[string]int{}}
}

func (s *scripted) set(id string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs[id] = err
}

func (s *scripted) count(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[id]
}

func (s *scripted) Check(_ context.Context, t Target) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[t.ID]++
	return s.errs[t.ID]
}

// errRefused is what scripted checks return for a failure.
func errRefused() error { return &CheckError{Reason: "connection refused"} }

// record is one check result as the Monitor's test hook saw it.
type record struct {
	id  string
	due time.Time
	r   Result
}

// harness is a Monitor under test with channels of its results and changes.
type harness struct {
	*Monitor
	results chan record
	changes chan Change
}

// withResultHook is the test-only option behind harness.
func withResultHook(f func(id string, due time.Time, r Result)) Option {
	return func(c *config) { c.onResult = f }
}

func newHarness(t *testing.T, c Checker, opts ...Option) *harness {
	t.Helper()
	h := &harness{results: make(chan record, 1024), changes: make(chan Change, 1024)}
	opts = append([]Option{
		withResultHook(func(id string, due time.Time, r Result) { h.results <- record{id, due, r} }),
		WithOnChange(func(c Change) { h.changes <- c }),
	}, opts...)
	m, err := New(c, opts...)
	require.NoError(t, err)
	h.Monitor = m
	t.Cleanup(func() { require.NoError(t, m.Close()) })
	return h
}

// checks waits for n check results and returns them.
func (h *harness) checks(t *testing.T, n int) []record {
	t.Helper()
	out := make([]record, 0, n)
	timeout := time.After(wait)
	for len(out) < n {
		select {
		case r := <-h.results:
			out = append(out, r)
		case <-timeout:
			t.Fatalf("got %d check results, want %d: %+v", len(out), n, out)
		}
	}
	return out
}

// change waits for the next change.
func (h *harness) change(t *testing.T) Change {
	t.Helper()
	select {
	case c := <-h.changes:
		return c
	case <-time.After(wait):
		t.Fatal("no change reported")
	}
	return Change{}
}

// closeAndDrain closes the Monitor, which delivers every queued change,
// and returns the changes not yet taken: the exact answer to "which other
// changes were reported?".
func (h *harness) closeAndDrain(t *testing.T) []Change {
	t.Helper()
	require.NoError(t, h.Close())
	var out []Change
	for {
		select {
		case c := <-h.changes:
			out = append(out, c)
		default:
			return out
		}
	}
}

func mustStatus(t *testing.T, m *Monitor, id string) Status {
	t.Helper()
	st, ok := m.Status(id)
	require.True(t, ok, "no status for %q", id)
	return st
}

// tcpServer is a loopback TCP listener that accepts and closes connections
// until stopped; it can be stopped and started again on the same port.
type tcpServer struct {
	t    testing.TB
	addr string
	ln   net.Listener
	wg   sync.WaitGroup
}

func newTCPServer(t testing.TB, network, addr string) *tcpServer {
	t.Helper()
	ln, err := net.Listen(network, addr)
	require.NoError(t, err)
	s := &tcpServer{t: t, addr: ln.Addr().String()}
	s.serve(ln)
	t.Cleanup(s.stop)
	return s
}

func (s *tcpServer) serve(ln net.Listener) {
	s.ln = ln
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	})
}

func (s *tcpServer) stop() {
	if s.ln != nil {
		_ = s.ln.Close()
		s.ln = nil
	}
	s.wg.Wait()
}

// restart listens again on the same address.
func (s *tcpServer) restart() {
	s.t.Helper()
	ln, err := net.Listen("tcp", s.addr)
	require.NoError(s.t, err, "port of %s taken while the server was down", s.addr)
	s.serve(ln)
}

// closedAddr returns a loopback address with nothing listening (it was
// listening a moment ago).
func closedAddr(t testing.TB, network, addr string) string {
	t.Helper()
	var c io.Closer
	var a string
	if strings.HasPrefix(network, "udp") {
		pc, err := net.ListenPacket(network, addr)
		require.NoError(t, err)
		c, a = pc, pc.LocalAddr().String()
	} else {
		ln, err := net.Listen(network, addr)
		require.NoError(t, err)
		c, a = ln, ln.Addr().String()
	}
	require.NoError(t, c.Close())
	return a
}

func portOf(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := net.LookupPort("tcp", p)
	require.NoError(t, err)
	return n
}

func timeoutCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
