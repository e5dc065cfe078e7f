package sticky

import (
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// mutexMap is the baseline of the source-IP benchmarks: one map behind one
// mutex, with the same expiry-and-refresh semantics as SourceIP (but no
// capacity, no sweeping, no prefixes) and the same clock, so that the
// difference measured is the table.
type mutexMap struct {
	mu    sync.Mutex // guards m
	m     map[netip.Addr]mmEntry
	ttl   int64
	clock clock
}

type mmEntry struct {
	id  string
	exp int64
}

func newMutexMap(ttl time.Duration) *mutexMap {
	return &mutexMap{m: map[netip.Addr]mmEntry{}, ttl: int64(ttl), clock: newClock(nil)}
}

func (m *mutexMap) lookup(a netip.Addr) (string, bool) {
	now := m.clock.since()
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[a]
	if !ok || e.exp <= now {
		return "", false
	}
	e.exp = now + m.ttl
	m.m[a] = e
	return e.id, true
}

func (m *mutexMap) remember(a netip.Addr, id string) {
	now := m.clock.since()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[a] = mmEntry{id, now + m.ttl}
}

// mutexStringMap is the baseline of the application cookie benchmark: what
// one would write first, net/http's Request.Cookie and the values
// themselves as keys of one map behind one mutex (no expiry, no capacity).
type mutexStringMap struct {
	name string
	mu   sync.Mutex // guards m
	m    map[string]string
}

func (m *mutexStringMap) lookup(r *http.Request) (string, bool) {
	c, err := r.Cookie(m.name)
	if err != nil {
		return "", false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.m[c.Value]
	return id, ok
}

// hexCookie is the baseline of the cookie benchmarks: the target ID and the
// expiry in plain hex, no MAC, no encryption; anyone can read and forge it.
// It decodes without allocating and interns IDs like Cookie, so the
// difference measured is the cryptography.
type hexCookie struct {
	ids map[string]string
}

func (h *hexCookie) appendValue(dst []byte, id string, exp int64) []byte {
	var b [8 + MaxIDLen]byte
	binary.BigEndian.PutUint64(b[:8], uint64(exp))
	n := copy(b[8:], id)
	return hex.AppendEncode(dst, b[:8+n])
}

func (h *hexCookie) read(v string, now int64) (string, bool) {
	var b [8 + MaxIDLen]byte
	if len(v)%2 != 0 || len(v)/2 > len(b) || len(v) < 18 {
		return "", false
	}
	for i := 0; i < len(v); i += 2 {
		hi, lo := unhex(v[i]), unhex(v[i+1])
		if hi > 15 || lo > 15 {
			return "", false
		}
		b[i/2] = hi<<4 | lo
	}
	n := len(v) / 2
	if int64(binary.BigEndian.Uint64(b[:8])) <= now {
		return "", false
	}
	if id, ok := h.ids[string(b[8:n])]; ok {
		return id, true
	}
	return string(b[8:n]), true
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return 0xff
}
