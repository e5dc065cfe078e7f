package proxy

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Retry bounds how the HTTP proxy retries a request on another target.
//
// A request that never reached a target (the connection was refused or
// timed out) is always retried. After a response timeout, a reset or a
// malformed response, it is retried only when the method is idempotent
// (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) and the body, if any, could be
// replayed: it was at most BodyLimit bytes. With stickiness on, nothing is
// retried, as in the reference load balancers: the client gets 502 or 504
// at once and its next request follows the session's health.
//
// Every retry also needs a token from the retry budget, so a failing group
// never sees more than its normal load times 1 + Ratio (plus the floor).
type Retry struct {
	// Attempts is the most targets one request tries, the first included.
	// Default: 3. 1 turns retries off.
	Attempts int
	// Timeout bounds the total time of a request's attempts: no new
	// attempt starts after it. Default: 15 s.
	Timeout time.Duration
	// BodyLimit is the largest request body kept for replay. Default:
	// 64 KiB. Negative: bodies are never replayed.
	BodyLimit int64
	// Ratio is the retry budget: retries may be this fraction of requests,
	// measured as a token bucket (each request adds Ratio tokens, each retry
	// takes one). Default: 0.2.
	Ratio float64
	// MinPerSecond is the budget's floor: this many retries per second are
	// allowed whatever the request rate, so a quiet listener can retry.
	// Default: 10.
	MinPerSecond int
}

// Defaults of Retry.
const (
	DefaultRetryAttempts     = 3
	DefaultRetryTimeout      = 15 * time.Second
	DefaultRetryBodyLimit    = 64 << 10
	DefaultRetryRatio        = 0.2
	DefaultRetryMinPerSecond = 10
)

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = DefaultRetryAttempts
	}
	if r.Timeout <= 0 {
		r.Timeout = DefaultRetryTimeout
	}
	if r.BodyLimit == 0 {
		r.BodyLimit = DefaultRetryBodyLimit
	}
	if r.Ratio <= 0 {
		r.Ratio = DefaultRetryRatio
	}
	if r.MinPerSecond <= 0 {
		r.MinPerSecond = DefaultRetryMinPerSecond
	}
	return r
}

// budget is a token bucket of retries, in thousandths of a token. Requests
// deposit ratio tokens, the floor adds minPerSecond tokens a second, and a
// retry withdraws one. It is lock-free: two atomics. Every request deposits,
// so tokens sits on a cache line of its own, and a deposit into a full
// bucket (the usual state: retries are rare) only reads it.
type budget struct {
	ratio  int64 // thousandths deposited per request
	floor  int64 // thousandths added per second
	cap    int64 // most thousandths held
	_      [cacheLine - 24]byte
	tokens atomic.Int64
	_      [cacheLine - 8]byte
	last   atomic.Int64 // unix nanos of the last floor refill
}

// cacheLine is the size the hot atomics are padded to.
const cacheLine = 64

// tokens must be what budget's padding says: a full line after the fields
// every deposit only reads, and a full line before last, which withdraw
// writes. So the line tokens is on, wherever the allocation starts, holds
// nothing that is written but tokens itself (a compile-time check).
var (
	_ [unsafe.Offsetof(budget{}.tokens) - cacheLine]byte
	_ [unsafe.Offsetof(budget{}.last) - unsafe.Offsetof(budget{}.tokens) - cacheLine]byte
)

func newBudget(r Retry, now time.Time) *budget {
	b := &budget{ratio: int64(r.Ratio * 1000), floor: int64(r.MinPerSecond) * 1000}
	// The bucket holds ten seconds of the floor, or 100 retries: enough to
	// absorb a burst of failures, too little to amplify an outage.
	b.cap = max(10*b.floor, 100*1000)
	b.tokens.Store(b.floor)
	b.last.Store(now.UnixNano())
	return b
}

// deposit is called for every request.
func (b *budget) deposit() {
	if b.tokens.Load() >= b.cap {
		return // full: nothing to write
	}
	if b.tokens.Add(b.ratio) > b.cap {
		b.tokens.Store(b.cap) // racy clamp: the bucket may briefly hold a little more
	}
}

// withdraw takes a retry token, reporting whether there was one.
func (b *budget) withdraw(now time.Time) bool {
	n := now.UnixNano()
	if last := b.last.Load(); n > last {
		if add := (n - last) * b.floor / int64(time.Second); add > 0 && b.last.CompareAndSwap(last, n) {
			if b.tokens.Add(add) > b.cap {
				b.tokens.Store(b.cap)
			}
		}
	}
	for {
		t := b.tokens.Load()
		if t < 1000 {
			return false
		}
		if b.tokens.CompareAndSwap(t, t-1000) {
			return true
		}
	}
}

// idempotent reports whether a method may be sent twice (RFC 9110 §9.2.2).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// errReplayDetached is what an abandoned attempt's body reads return.
var errReplayDetached = errors.New("proxy: request body moved to another attempt")

// replay records a request body as attempts read it, up to a limit, so that
// a later attempt can send it again: what was read comes from the record,
// the rest from the client. Each attempt reads through its own attemptBody;
// starting a new attempt detaches the previous one, whose transport may
// still be reading in another goroutine.
type replay struct {
	mu       sync.Mutex // guards every field below
	src      io.Reader  // the client's body
	buf      []byte     // everything read from src, while within limit
	limit    int64
	overflow bool // read past limit: no longer replayable
	cur      *attemptBody
}

// attemptBody is one attempt's view of a replayed body.
type attemptBody struct {
	r   *replay
	off int // position in r.buf, then in src
}

// next detaches the current attempt and returns the body for the next
// one, or false when what was read can no longer be replayed.
func (r *replay) next() (*attemptBody, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.overflow {
		return nil, false
	}
	r.cur = &attemptBody{r: r}
	return r.cur, true
}

// replayable reports whether what was read can still be sent again.
func (r *replay) replayable() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.overflow
}

// detach ends the last attempt's reads: the request is over.
func (r *replay) detach() {
	r.mu.Lock()
	r.cur = nil
	r.mu.Unlock()
}

func (a *attemptBody) Read(p []byte) (int, error) {
	r := a.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != a {
		return 0, errReplayDetached
	}
	if a.off < len(r.buf) {
		n := copy(p, r.buf[a.off:])
		a.off += n
		return n, nil
	}
	n, err := r.src.Read(p)
	a.off += n
	if n > 0 && !r.overflow {
		if int64(len(r.buf)+n) > r.limit {
			r.overflow = true
			r.buf = nil
		} else {
			r.buf = append(r.buf, p[:n]...)
		}
	}
	return n, err
}

// Close does nothing: the client's body belongs to the server, which
// closes it when the handler returns.
func (a *attemptBody) Close() error { return nil }
