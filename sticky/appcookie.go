package sticky

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// AppCookie is session persistence by a cookie the application sets (L7),
// such as JSESSIONID or PHPSESSID: the balancer learns which target set
// each value and sends later requests carrying that value to the same
// target.
//
// Remember learns from the application's Set-Cookie on the way back to the
// client: value → the target that answered. It also follows the
// application's lead when a session ends (a Set-Cookie of the name with
// Max-Age ≤ 0 or an Expires in the past forgets the values the request
// carried) and when a session moves (a request whose known value went to
// another target, answered without a new Set-Cookie, re-points the value
// there). It never learns a value only a client has shown, so clients
// cannot fill the table with made-up values.
//
// Values are kept as seeded 64-bit hashes, so a long value costs no memory;
// values longer than WithMaxValueLen are not followed at all. The table has
// a capacity (WithCapacity) and expires entries like SourceIP's, without a
// goroutine.
//
// The table is per process: behind several balancer nodes, a session
// sticks only on the node that saw its Set-Cookie. Use Cookie for sessions
// that must stick across nodes.
//
// Make one with NewAppCookie; the zero AppCookie is not usable. All methods
// are safe for concurrent use.
type AppCookie struct {
	name        string
	state       func(id string) TargetState
	stopOnDrain bool
	clock       clock
	maxLen      int
	seed        uint64 // keys the value hash, so clients cannot aim at collisions

	t      *table[uint64]
	remote *remote // nil without WithStore

	hits, misses, repicks, remembered atomic.Uint64
	oversized, garbage                atomic.Uint64
}

// NewAppCookie returns an application cookie policy following the cookie
// called name, or an error listing every invalid option. Options:
// WithTargetState, WithDuration, WithClock, WithStopOnDrain, WithCapacity,
// WithMaxValueLen, WithStore, WithStoreTimeout.
func NewAppCookie(name string, opts ...AppCookieOption) (*AppCookie, error) {
	c, err := newConfig(kindAppCookie, func(c *config) {
		for _, o := range opts {
			if o == nil {
				c.nilOption = true
				continue
			}
			o.applyAppCookie(c)
		}
	})
	if !isToken(name) {
		err = errors.Join(err, fmt.Errorf("sticky: %w: cookie name %q is not an HTTP token", ErrInvalidOption, name))
	}
	if err != nil {
		return nil, err
	}
	p := &AppCookie{
		name:        name,
		state:       c.state,
		stopOnDrain: c.stopOnDrain,
		clock:       newClock(c.clock),
		maxLen:      c.maxValueLen,
		seed:        rand.Uint64(),
		t:           newTable[uint64](int64(c.duration), c.capacity),
		remote:      newRemote(c),
	}
	p.t.saveEvery = saveEvery(c)
	return p, nil
}

// Name returns the name of the cookie followed.
func (p *AppCookie) Name() string { return p.name }

// Lookup returns the target that set the value of the request's cookie,
// when the session is live and the target's state allows it; a hit
// refreshes the session. When the request carries several cookies of the
// name, the first known one of the first few counts. With a Store, a
// local miss asks the store about the first value (see Store).
func (p *AppCookie) Lookup(r Request) (string, bool) {
	if len(r.Cookies) == 0 {
		p.misses.Add(1)
		return "", false
	}
	now := p.now()
	sc := scanCookies(r.Cookies, p.name)
	var first string // the first value followed, for the store
	var firstHash uint64
	for range maxCandidates {
		v, ok := sc.next()
		if !ok {
			break
		}
		h, ok := p.hash(v)
		if !ok {
			continue
		}
		if first == "" {
			first, firstHash = v, h
		}
		id, ok := p.t.get(h, h, now)
		if !ok {
			continue
		}
		if !usable(p.state, p.stopOnDrain, id) {
			p.repicks.Add(1)
			p.misses.Add(1)
			return "", false
		}
		p.hits.Add(1)
		return id, true
	}
	if p.remote != nil && first != "" {
		if id, ok := p.remote.load(cookieKey(p.name, first), now); ok {
			if !usable(p.state, p.stopOnDrain, id) {
				p.repicks.Add(1)
				p.misses.Add(1)
				return "", false
			}
			p.t.put(firstHash, firstHash, id, now)
			p.hits.Add(1)
			return id, true
		}
	}
	p.misses.Add(1)
	return "", false
}

// Remember learns from resp: each Set-Cookie of the name stores its
// value → id (or, when it deletes the cookie, forgets the values r
// carried). Without one, values r carried that the table knows are moved
// to id. A new value is refused when the table is full of live sessions
// (Stats.Refused). A nil header or an empty id is ignored.
func (p *AppCookie) Remember(r Request, id string, resp Response) {
	if resp == nil || id == "" {
		return
	}
	now := p.now()
	seen := false
	for _, line := range resp.SetCookies() {
		if setCookieName(line) != p.name {
			continue
		}
		seen = true
		c, err := http.ParseSetCookie(line)
		if err != nil || c.Name != p.name {
			p.garbage.Add(1)
			continue
		}
		if c.MaxAge < 0 || (!c.Expires.IsZero() && !c.Expires.After(p.clock.Now())) {
			p.forget(r, now)
			continue
		}
		h, ok := p.hash(c.Value)
		if !ok {
			continue
		}
		changed, _, save := p.t.putSave(h, h, id, now)
		if changed {
			p.remembered.Add(1)
		}
		if save && p.remote != nil {
			p.remote.save(cookieKey(p.name, c.Value), id, now)
		}
	}
	if seen || len(r.Cookies) == 0 {
		return
	}
	sc := scanCookies(r.Cookies, p.name)
	for range maxCandidates {
		v, ok := sc.next()
		if !ok {
			return
		}
		h, ok := p.hashQuiet(v)
		if !ok {
			continue
		}
		changed, save := p.t.repointSave(h, h, id, now)
		if changed {
			p.remembered.Add(1)
		}
		if save && p.remote != nil {
			p.remote.save(cookieKey(p.name, v), id, now)
		}
	}
}

// forget drops the values r carried.
func (p *AppCookie) forget(r Request, now int64) {
	sc := scanCookies(r.Cookies, p.name)
	for range maxCandidates {
		v, ok := sc.next()
		if !ok {
			return
		}
		if h, ok := p.hashQuiet(v); ok {
			p.t.del(h, h, now)
		}
	}
}

// hash returns the table key of a value, or false for an empty value or
// one over the cap (counted as Oversized).
func (p *AppCookie) hash(v string) (uint64, bool) {
	if len(v) > p.maxLen {
		p.oversized.Add(1)
		return 0, false
	}
	return p.hashQuiet(v)
}

// hashQuiet is hash without counting, for values already counted.
func (p *AppCookie) hashQuiet(v string) (uint64, bool) {
	if v == "" || len(v) > p.maxLen {
		return 0, false
	}
	var d xxhash.Digest
	d.ResetWithSeed(p.seed)
	d.WriteString(v)
	return d.Sum64(), true
}

// Stats returns the policy's counters. It first drops expired sessions, so
// Entries counts live ones.
func (p *AppCookie) Stats() Stats {
	ts := p.t.stats(p.now())
	st := Stats{
		Hits:       p.hits.Load(),
		Misses:     p.misses.Load(),
		Repicks:    p.repicks.Load(),
		Remembered: p.remembered.Load(),
		Refused:    ts.refused,
		Entries:    ts.entries,
		Expired:    ts.expired,
		BadCookies: BadCookies{Oversized: p.oversized.Load(), Garbage: p.garbage.Load()},
	}
	p.remote.stats(&st)
	return st
}

// now returns the table time: nanoseconds since the clock's first reading.
func (p *AppCookie) now() int64 { return p.clock.since() }
