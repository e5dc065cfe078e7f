package proxy

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// tcpFlow is a TCP connection's entry in the flow table.
//
// Bytes move by splice, in the kernel, so the table never sees a lookup per
// read and would expire every busy connection after its idle timeout. The
// table asks idle instead before expiring a due flow, and idle answers from
// TCP_INFO of both sockets: when data last moved either way, and whether
// segments arrived without data since the previous question (TCP keepalive
// probes, which the reference counts as activity; the proxy's own sockets
// send none). The first answer is taken as of now, the next ones wait a full
// idle timeout, so a connection is reset between its idle timeout and twice
// that after its last keepalive probe, and within its idle timeout plus one
// sweep interval after its last data.
type tcpFlow struct {
	c *tcpConn

	target atomic.Pointer[net.TCPConn] // set once connected; nil before

	mu        sync.Mutex // guards the fields below; idle runs on the sweeper, baseline on the connection's goroutine
	segsIn    [2]uint32  // segments received by the client and target sockets at the previous look
	prevCheck time.Time  // when the previous look happened
}

// baseline records the segment counts of both sockets once connected, so
// that the handshake does not count as a keepalive probe later.
func (f *tcpFlow) baseline(client, target *net.TCPConn) {
	f.target.Store(target)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prevCheck = time.Now()
	for i, c := range [2]*net.TCPConn{client, target} {
		if c == nil {
			continue
		}
		if a, err := tcpActivityOf(c); err == nil {
			f.segsIn[i] = a.segsIn
		}
	}
}

// idle implements flow.
func (f *tcpFlow) idle() (time.Duration, bool) {
	client := f.c.clientTCP
	target := f.target.Load()
	if client == nil && target == nil {
		return 0, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	idle := time.Duration(1<<63 - 1)
	probed := false
	for i, c := range [2]*net.TCPConn{client, target} {
		if c == nil {
			continue
		}
		a, err := tcpActivityOf(c)
		if err != nil { // closed meanwhile: let it expire
			return 0, false
		}
		idle = min(idle, a.idle)
		if a.segsIn != f.segsIn[i] {
			probed = true
			f.segsIn[i] = a.segsIn
		}
	}
	if probed && now.Add(-idle).Before(f.prevCheck) {
		// Segments but no data since the previous look: keepalive probes
		// at some moment since then; take the latest possible.
		idle = 0
	}
	f.prevCheck = now
	return idle, true
}

// expire implements flow: the idle timeout passed, reset both sides.
func (f *tcpFlow) expire() {
	f.c.p.stats.idleResets.Add(1)
	f.c.abort()
}
