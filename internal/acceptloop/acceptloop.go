package acceptloop

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Back-off between two failed accepts, as net/http's server: the first wait
// is MinBackoff, each next one twice the last, at most MaxBackoff.
const (
	MinBackoff = 5 * time.Millisecond
	MaxBackoff = time.Second
)

// Counters are the accept errors of one or more Listeners (a proxy may serve
// several), read by their owner's Stats. The zero value is ready to use.
type Counters struct {
	errors  atomic.Uint64
	failing atomic.Int32          // listeners in an episode now
	since   atomic.Int64          // unix nanoseconds when the current episode started; 0: none
	last    atomic.Pointer[error] // the latest accept error
}

// Stats is a snapshot of Counters.
type Stats struct {
	// Errors counts failed accepts since the counters were made.
	Errors uint64
	// FailingSince is when the current episode began (the earliest, if
	// several listeners are failing); zero while every listener accepts.
	FailingSince time.Time
	// LastError is the latest accept error, nil if none yet.
	LastError error
}

// Stats returns a snapshot of the counters; it reads atomics only.
func (c *Counters) Stats() Stats {
	s := Stats{Errors: c.errors.Load()}
	if ns := c.since.Load(); ns != 0 {
		s.FailingSince = time.Unix(0, ns)
	}
	if e := c.last.Load(); e != nil {
		s.LastError = *e
	}
	return s
}

// Describe returns err in words for a diagnosis: the system's own words
// when it carries an errno ("too many open files"), else err's text.
func Describe(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

// Config configures a Listener. The zero value logs to slog.Default and
// uses the system clock.
type Config struct {
	// Log returns the logger for the episode's two lines; nil means
	// slog.Default. It is a function so that an owner whose logger changes
	// at run time is followed.
	Log func() *slog.Logger
	// Attrs are added to both log lines (e.g. "listener", "web").
	Attrs []any
	// Counters, if set, are shared with other listeners of the same owner;
	// nil gives the listener its own (see Listener.Stats).
	Counters *Counters
	// Now reads the clock for the episode's start and length; nil means
	// time.Now.
	Now func() time.Time
	// Wait waits d, or until stop is closed, and reports whether it waited
	// the whole time; nil uses a timer. Tests replace it to run back-offs
	// without sleeping.
	Wait func(d time.Duration, stop <-chan struct{}) bool
}

// Listener is a net.Listener whose Accept survives every error but closing.
// It is safe for concurrent use; Close may be called at any time, any number
// of times.
type Listener struct {
	ln     net.Listener
	cfg    Config
	c      *Counters
	closed chan struct{}
	once   sync.Once

	inEpisode atomic.Bool // read by every accept, to keep its success path lock-free
	mu        sync.Mutex  // guards the fields below
	start     time.Time   // when the current episode began
	n         uint64      // errors in the current episode
	backoff   time.Duration
}

// New wraps ln. The caller closes the Listener (which closes ln), not ln.
func New(ln net.Listener, cfg Config) *Listener {
	c := cfg.Counters
	if c == nil {
		c = new(Counters)
	}
	return &Listener{ln: ln, cfg: cfg, c: c, closed: make(chan struct{})}
}

// Accept returns the next connection. It returns an error only once the
// listener is closed (by Close, or by whoever owns ln): net.ErrClosed, or
// ln's own error when ln reports its closing otherwise. Every other error is
// counted, logged once per episode and retried after a back-off.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		probing := l.inEpisode.Load() && l.probe(true)
		c, err := l.ln.Accept()
		if probing {
			l.probe(false)
		}
		if err == nil {
			if l.inEpisode.Load() {
				l.recovered()
			}
			return c, nil
		}
		if l.isClosed() || errors.Is(err, net.ErrClosed) {
			l.endEpisode()
			return nil, err
		}
		if ne, ok := err.(net.Error); probing && ok && ne.Timeout() {
			// The probe found no client waiting but no error either:
			// the resource is back.
			l.recovered()
			continue
		}
		d := l.failed(err)
		if !l.wait(d) {
			l.endEpisode()
			return nil, net.ErrClosed
		}
	}
}

// probeWindow is how long an accept during an episode waits for a client
// before it counts as proof that accepting works again. Without it an
// episode would last, for Stats and Diagnose, until the next client came.
const probeWindow = time.Millisecond

// probe sets (on) or clears the wrapped listener's deadline, if it has one,
// and reports whether it could.
func (l *Listener) probe(on bool) bool {
	d, ok := l.ln.(interface{ SetDeadline(time.Time) error })
	if !ok {
		return false
	}
	var t time.Time // none
	if on {
		t = time.Now().Add(probeWindow) // deadlines are on the system clock, not Config.Now
	}
	return d.SetDeadline(t) == nil
}

func (l *Listener) isClosed() bool {
	select {
	case <-l.closed:
		return true
	default:
		return false
	}
}

// failed counts err, starts an episode if none is running, and returns how
// long to wait before the next try.
func (l *Listener) failed(err error) time.Duration {
	l.c.errors.Add(1)
	l.c.last.Store(&err)
	l.mu.Lock()
	l.n++
	l.backoff = min(max(2*l.backoff, MinBackoff), MaxBackoff)
	d := l.backoff
	starting := !l.inEpisode.Load()
	if starting {
		l.start = l.now()
		l.inEpisode.Store(true)
		if l.c.failing.Add(1) == 1 {
			l.c.since.Store(l.start.UnixNano())
		}
	}
	l.mu.Unlock()
	if starting {
		l.log().Warn("cannot accept connections; retrying with back-off until it works again",
			append(l.cfg.Attrs[:len(l.cfg.Attrs):len(l.cfg.Attrs)], "addr", l.addr(), "err", err)...)
	}
	return d
}

// recovered ends the episode after a successful accept and logs it.
func (l *Listener) recovered() {
	if took, n, ok := l.finish(); ok {
		l.log().Info("accepting connections again",
			append(l.cfg.Attrs[:len(l.cfg.Attrs):len(l.cfg.Attrs)], "addr", l.addr(), "after", took.Round(time.Millisecond).String(), "errors", n)...)
	}
}

// endEpisode ends the episode, if any, when the listener closes: the owner
// stopped it, so there is nothing to report.
func (l *Listener) endEpisode() { l.finish() }

// finish ends the current episode and returns its length and error count,
// with ok false if there was none.
func (l *Listener) finish() (took time.Duration, n uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.inEpisode.Load() {
		return 0, 0, false
	}
	l.inEpisode.Store(false)
	if l.c.failing.Add(-1) == 0 {
		l.c.since.Store(0)
	}
	took, n = l.now().Sub(l.start), l.n
	l.n, l.backoff = 0, 0
	return took, n, true
}

func (l *Listener) wait(d time.Duration) bool {
	if l.cfg.Wait != nil {
		return l.cfg.Wait(d, l.closed)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.closed:
		return false
	}
}

func (l *Listener) now() time.Time {
	if l.cfg.Now != nil {
		return l.cfg.Now()
	}
	return time.Now()
}

func (l *Listener) log() *slog.Logger {
	if l.cfg.Log != nil {
		if lg := l.cfg.Log(); lg != nil {
			return lg
		}
	}
	return slog.Default()
}

func (l *Listener) addr() string {
	if a := l.ln.Addr(); a != nil {
		return a.String()
	}
	return ""
}

// Close closes the listener and wakes an Accept waiting out a back-off.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.closed)
		err = l.ln.Close()
	})
	return err
}

// Addr returns the wrapped listener's address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Stats returns the listener's counters (shared ones when Config.Counters
// was set).
func (l *Listener) Stats() Stats { return l.c.Stats() }
