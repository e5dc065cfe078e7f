package proxy

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// tcpActivity is what the kernel says about one socket's recent traffic.
type tcpActivity struct {
	idle       time.Duration // since data last moved either way
	bareIn     uint32        // segments received without data: ACKs, keepalive probes
	dataSegOut uint32        // data segments sent, each of which may draw an ACK
}

// tcpFlow is a TCP connection's entry in the flow table.
//
// Bytes move by splice, in the kernel, so the table never sees a lookup per
// read and would expire every busy connection after its idle timeout. The
// table asks idle instead before expiring a due flow, and idle answers from
// TCP_INFO of both sockets: when data last moved either way, and whether
// more segments without data arrived since the previous question than the
// data the socket sent could have drawn as ACKs: those are TCP keepalive
// probes, which the reference counts as activity (the proxy's own sockets
// send none). Their time is unknown, so they count as activity now: a
// connection is reset within its idle timeout plus one sweep interval after
// its last data, and between one and two idle timeouts after its last
// keepalive probe.
type tcpFlow struct {
	c *tcpConn

	target atomic.Pointer[net.TCPConn] // set once connected; nil before

	mu   sync.Mutex     // guards prev; idle runs on the sweeper, baseline on the connection's goroutine
	prev [2]tcpActivity // the client and target sockets at the previous look
}

// baseline records the segment counts of both sockets once connected, so
// that the handshake does not count as a keepalive probe later.
func (f *tcpFlow) baseline(client, target *net.TCPConn) {
	f.target.Store(target)
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, c := range [2]*net.TCPConn{client, target} {
		if c == nil {
			continue
		}
		if a, err := tcpActivityOf(c); err == nil {
			f.prev[i] = a
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
	idle := time.Duration(1<<63 - 1)
	probed := false
	for i, c := range [2]*net.TCPConn{client, target} {
		if c == nil {
			continue
		}
		a, err := tcpActivityOf(c)
		if errors.Is(err, errors.ErrUnsupported) {
			return 0, true // no TCP_INFO here: never reset a connection that may be busy
		}
		if err != nil { // closed meanwhile: let it expire
			return 0, false
		}
		idle = min(idle, a.idle)
		// Unsigned differences: the counters wrap.
		if a.bareIn-f.prev[i].bareIn > a.dataSegOut-f.prev[i].dataSegOut {
			probed = true
		}
		f.prev[i] = a
	}
	if probed {
		// Keepalive probes since the previous look, at a moment unknown:
		// take the latest possible.
		idle = 0
	}
	return idle, true
}

// evict implements flow; TCP flows are never evicted (they are never
// unreplied), so it only closes as expire does.
func (f *tcpFlow) evict() { f.expire() }

// expire implements flow: the idle timeout passed, reset both sides.
func (f *tcpFlow) expire() {
	f.c.p.stats.idleResets.Add(1)
	f.c.endBy(ClosedIdle)
	f.c.abort()
}
