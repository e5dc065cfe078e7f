package acceptloop

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scripted is a listener whose Accept returns the errors of its script, in
// order, then real connections from a loopback listener.
type scripted struct {
	net.Listener
	mu     sync.Mutex
	script []error
	onErr  func(i int) // called after the i-th scripted error is returned
	i      int
}

func (s *scripted) Accept() (net.Conn, error) {
	s.mu.Lock()
	if s.i < len(s.script) {
		err := s.script[s.i]
		s.i++
		i := s.i
		s.mu.Unlock()
		if s.onErr != nil {
			s.onErr(i)
		}
		return nil, err
	}
	s.mu.Unlock()
	return s.Listener.Accept()
}

// SetDeadline passes deadlines to the loopback listener, as a
// *net.TCPListener takes them.
func (s *scripted) SetDeadline(t time.Time) error {
	return s.Listener.(*net.TCPListener).SetDeadline(t)
}

func loopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln
}

func opErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

// fakeClock is a clock that tests move.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestEveryErrorButClosingIsRetried: temporary errors, errors net calls
// permanent and errors of unknown kinds are all retried with net/http's
// back-off, and the connection that follows is returned.
func TestEveryErrorButClosingIsRetried(t *testing.T) {
	errs := []error{opErr(syscall.EMFILE), opErr(syscall.ENFILE), opErr(syscall.ENOBUFS), opErr(syscall.ENOMEM),
		opErr(syscall.ECONNABORTED), opErr(syscall.EPROTO), errors.New("something unheard of")}
	for range 6 {
		errs = append(errs, opErr(syscall.EMFILE))
	}
	base := loopback(t)
	clk := &fakeClock{t: time.Date(2026, 1, 2, 10, 42, 1, 0, time.UTC)}
	var waits []time.Duration
	var logs bytes.Buffer
	var c Counters
	l := New(&scripted{Listener: base, script: errs}, Config{
		Log:      func() *slog.Logger { return slog.New(slog.NewTextHandler(&logs, nil)) },
		Attrs:    []any{"listener", "web"},
		Counters: &c,
		Now:      clk.Now,
		Wait: func(d time.Duration, _ <-chan struct{}) bool {
			waits = append(waits, d)
			st := c.Stats()
			assert.Equal(t, time.Date(2026, 1, 2, 10, 42, 1, 0, time.UTC), st.FailingSince.UTC(), "an episode is under way")
			clk.add(d)
			return true
		},
	})
	defer l.Close()

	client, err := net.Dial("tcp", base.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	conn, err := l.Accept()
	require.NoError(t, err)
	conn.Close()

	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000, 1000, 1000}
	for i := range want {
		want[i] *= time.Millisecond
	}
	assert.Equal(t, want, waits, "back-off as net/http's: 5 ms doubling to 1 s")
	st := l.Stats()
	assert.Equal(t, uint64(len(errs)), st.Errors)
	assert.True(t, st.FailingSince.IsZero(), "the episode ended with the connection")
	assert.Equal(t, "too many open files", Describe(st.LastError))

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Len(t, lines, 2, "one warning and one info line per episode, never one per error:\n%s", logs.String())
	assert.Contains(t, lines[0], "level=WARN")
	assert.Contains(t, lines[0], "listener=web")
	assert.Contains(t, lines[0], "too many open files")
	assert.Contains(t, lines[1], "level=INFO")
	assert.Contains(t, lines[1], "after=6.275s", "the episode's length on the injected clock")
	assert.Contains(t, lines[1], fmt.Sprintf("errors=%d", len(errs)))
}

// TestEpisodesAreCountedApart: a second run of errors is a new episode with
// its own back-off from 5 ms and its own two log lines.
func TestEpisodesAreCountedApart(t *testing.T) {
	base := loopback(t)
	var waits []time.Duration
	var logs bytes.Buffer
	l := New(&scripted{Listener: base, script: []error{opErr(syscall.EMFILE), opErr(syscall.EMFILE)}}, Config{
		Log:  func() *slog.Logger { return slog.New(slog.NewTextHandler(&logs, nil)) },
		Wait: func(d time.Duration, _ <-chan struct{}) bool { waits = append(waits, d); return true },
	})
	defer l.Close()
	for range 2 {
		c, err := net.Dial("tcp", base.Addr().String())
		require.NoError(t, err)
		defer c.Close()
	}
	c1, err := l.Accept()
	require.NoError(t, err)
	c1.Close()
	l.ln.(*scripted).mu.Lock()
	l.ln.(*scripted).script = append(l.ln.(*scripted).script, opErr(syscall.ENFILE))
	l.ln.(*scripted).mu.Unlock()
	c2, err := l.Accept()
	require.NoError(t, err)
	c2.Close()
	assert.Equal(t, []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 5 * time.Millisecond}, waits)
	assert.Equal(t, 4, strings.Count(logs.String(), "\n"), logs.String())
	assert.Equal(t, 2, strings.Count(logs.String(), "level=WARN"))
	assert.Equal(t, uint64(3), l.Stats().Errors)
}

// TestClosingEndsAccept: closing the listener, or the wrapped one, is the
// only way out; a Close during a back-off wakes it.
func TestClosingEndsAccept(t *testing.T) {
	t.Run("closed wrapped listener", func(t *testing.T) {
		base := loopback(t)
		l := New(base, Config{})
		base.Close()
		_, err := l.Accept()
		require.ErrorIs(t, err, net.ErrClosed)
		assert.Zero(t, l.Stats().Errors, "closing is not an error")
	})
	t.Run("close during back-off", func(t *testing.T) {
		base := loopback(t)
		var l *Listener
		inWait := make(chan struct{})
		s := &scripted{Listener: base}
		for range 100 {
			s.script = append(s.script, opErr(syscall.EMFILE))
		}
		l = New(s, Config{Wait: func(d time.Duration, stop <-chan struct{}) bool {
			select {
			case inWait <- struct{}{}:
			default:
			}
			<-stop // waits for Close: a back-off only ends early by it
			return false
		}})
		done := make(chan error, 1)
		go func() {
			_, err := l.Accept()
			done <- err
		}()
		<-inWait
		require.NoError(t, l.Close())
		select {
		case err := <-done:
			require.ErrorIs(t, err, net.ErrClosed)
		case <-time.After(10 * time.Second):
			t.Fatal("Accept did not return after Close")
		}
		assert.True(t, l.Stats().FailingSince.IsZero(), "a closed listener has no episode")
	})
	t.Run("close during a real timer", func(t *testing.T) {
		base := loopback(t)
		s := &scripted{Listener: base}
		for range 100 {
			s.script = append(s.script, opErr(syscall.EMFILE))
		}
		calls := make(chan struct{}, 100)
		s.onErr = func(int) { calls <- struct{}{} }
		l := New(s, Config{Log: func() *slog.Logger { return slog.New(slog.DiscardHandler) }})
		done := make(chan error, 1)
		go func() {
			_, err := l.Accept()
			done <- err
		}()
		<-calls
		require.NoError(t, l.Close())
		select {
		case err := <-done:
			require.ErrorIs(t, err, net.ErrClosed)
		case <-time.After(10 * time.Second):
			t.Fatal("Accept did not return after Close")
		}
	})
}

// TestSharedCountersKeepTheEarliestEpisode: two listeners of one owner share
// counters; the episode start stays until both accept again.
func TestSharedCountersKeepTheEarliestEpisode(t *testing.T) {
	var c Counters
	clk := &fakeClock{t: time.Unix(1000, 0)}
	mk := func() (*Listener, chan struct{}) {
		base := loopback(t)
		release := make(chan struct{})
		s := &scripted{Listener: base, script: []error{opErr(syscall.EMFILE)}}
		l := New(s, Config{Counters: &c, Now: clk.Now, Log: func() *slog.Logger { return slog.New(slog.DiscardHandler) },
			Wait: func(time.Duration, <-chan struct{}) bool { <-release; return true }})
		cl, err := net.Dial("tcp", base.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { cl.Close() })
		return l, release
	}
	a, ra := mk()
	b, rb := mk()
	defer a.Close()
	defer b.Close()
	accepted := make(chan net.Conn, 2)
	go func() { c, _ := a.Accept(); accepted <- c }()
	for c.Stats().FailingSince.IsZero() {
		runtime.Gosched()
	}
	clk.add(time.Second)
	go func() { c, _ := b.Accept(); accepted <- c }()
	for c.Stats().Errors < 2 {
		runtime.Gosched()
	}
	assert.Equal(t, time.Unix(1000, 0), c.Stats().FailingSince)
	close(ra)
	(<-accepted).Close()
	assert.Equal(t, time.Unix(1000, 0), c.Stats().FailingSince, "b still fails")
	close(rb)
	(<-accepted).Close()
	assert.True(t, c.Stats().FailingSince.IsZero())
}

// TestEpisodeEndsWithoutAClient: on a listener that takes deadlines, the
// episode ends as soon as an accept no longer fails, although no client
// came; the next client is then accepted as usual.
func TestEpisodeEndsWithoutAClient(t *testing.T) {
	base := loopback(t)
	var logs bytes.Buffer
	var mu sync.Mutex
	l := New(&scripted{Listener: base, script: []error{opErr(syscall.EMFILE), opErr(syscall.EMFILE)}}, Config{
		Log: func() *slog.Logger {
			return slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
				mu.Lock()
				defer mu.Unlock()
				return logs.Write(p)
			}), nil))
		},
		Wait: func(time.Duration, <-chan struct{}) bool { return true },
	})
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	require.Eventually(t, func() bool {
		st := l.Stats()
		return st.Errors == 2 && st.FailingSince.IsZero()
	}, 10*time.Second, time.Millisecond, "the episode ends with no client")
	// The episode's end is counted before it is logged.
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(logs.String(), "accepting connections again")
	}, 10*time.Second, time.Millisecond, "the episode's end logged")
	c, err := net.Dial("tcp", base.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	got := <-accepted
	require.NotNil(t, got, "the next client is accepted: the probe's deadline is gone")
	got.Close()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestDescribe(t *testing.T) {
	assert.Equal(t, "too many open files", Describe(opErr(syscall.EMFILE)))
	assert.Equal(t, "no buffer space available", Describe(opErr(syscall.ENOBUFS)))
	assert.Equal(t, "odd", Describe(errors.New("odd")))
	assert.Equal(t, "", Describe(nil))
}
