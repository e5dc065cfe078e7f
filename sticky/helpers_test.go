package sticky

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// states is a target state function backed by a map; targets not in it are
// Usable.
type states struct {
	mu sync.Mutex // guards m
	m  map[string]TargetState
}

func newStates() *states { return &states{m: map[string]TargetState{}} }

func (s *states) set(id string, st TargetState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[id] = st
}

func (s *states) get(id string) TargetState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[id]
}

// testKey returns a 32-byte key filled with b.
func testKey(b byte) []byte {
	k := make([]byte, MinKeyLen)
	for i := range k {
		k[i] = b
	}
	return k
}

// httpReq returns a request carrying the given Cookie header lines.
func httpReq(t testing.TB, cookies ...string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
	require.NoError(t, err)
	for _, c := range cookies {
		r.Header.Add("Cookie", c)
	}
	return r
}
