package hostile

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The child's descriptor limit in the flood cases, and what it makes of
// it by default: a budget of 768 descriptors, a flow table of 768 flows, 64
// flows per source address.
const floodLimit = 1024

// normalClients are clients from 127.0.0.1 using the TCP, HTTP and UDP
// listeners one request at a time while an attack runs: a new TCP
// connection and a new HTTP connection per request (every one goes through
// accept and admission), and one UDP socket (a long-lived flow) whose
// datagrams the UDP target notes under the mark "normal".
type normalClients struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	ok   map[string]int
	bad  map[string]int
	errs map[string][]string
}

func startNormalClients(t *testing.T, c *child) *normalClients {
	t.Helper()
	n := &normalClients{stop: make(chan struct{}), ok: map[string]int{}, bad: map[string]int{}, errs: map[string][]string{}}
	udp := newUDPClient(t, c.addrs["udp"], "127.0.0.1")
	hc := httpClient("127.0.0.1")
	kinds := map[string]func() error{
		"tcp":  func() error { return echoOnce(c.addrs["tcp"], "127.0.0.1", false) },
		"http": func() error { return getOnce(hc, "http://"+c.addrs["http"]+"/") },
		// The same listener kind served by event loops (lb.WithEventLoop).
		"httploop": func() error { return getOnce(hc, "http://"+c.addrs["httploop"]+"/") },
		"udp":      func() error { return udp.ask("keep:normal", time.Second) },
	}
	for kind, once := range kinds {
		n.wg.Go(func() {
			for {
				select {
				case <-n.stop:
					return
				default:
				}
				err := once()
				n.mu.Lock()
				if err == nil {
					n.ok[kind]++
				} else {
					n.bad[kind]++
					if len(n.errs[kind]) < 5 {
						n.errs[kind] = append(n.errs[kind], err.Error())
					}
				}
				n.mu.Unlock()
				time.Sleep(10 * time.Millisecond) // a client's pace, not synchronisation
			}
		})
	}
	t.Cleanup(n.finish)
	return n
}

// reset forgets the counts so far.
func (n *normalClients) reset() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.ok, n.bad, n.errs = map[string]int{}, map[string]int{}, map[string][]string{}
}

func (n *normalClients) finish() {
	select {
	case <-n.stop:
	default:
		close(n.stop)
	}
	n.wg.Wait()
}

// check stops the clients and requires at least 99 % success of each kind,
// over at least 20 requests.
func (n *normalClients) check(t *testing.T) {
	t.Helper()
	n.finish()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, kind := range []string{"tcp", "http", "httploop", "udp"} {
		ok, bad := n.ok[kind], n.bad[kind]
		t.Logf("normal %s clients: %d of %d succeeded", kind, ok, ok+bad)
		require.GreaterOrEqual(t, ok+bad, 20, "normal %s clients made too few requests to judge", kind)
		assert.GreaterOrEqual(t, float64(ok)/float64(ok+bad), 0.99, "normal %s clients' success during the attack; errors: %q", kind, n.errs[kind])
	}
}

// udpFlood sends count datagrams to addr, each from a socket of its own,
// at about rate a second: from source(i) (an address and port; port 0 lets
// the kernel choose). Sources that cannot be bound are skipped.
func udpFlood(t *testing.T, addr string, count, rate int, source func(i int) *net.UDPAddr) (sent int) {
	t.Helper()
	raddr, err := net.ResolveUDPAddr("udp", addr)
	require.NoError(t, err)
	start := time.Now()
	for i := range count {
		if ahead := time.Duration(i)*time.Second/time.Duration(rate) - time.Since(start); ahead > time.Millisecond {
			time.Sleep(ahead) // pacing the flood, not synchronisation
		}
		c, err := net.DialUDP("udp", source(i), raddr)
		if err != nil {
			continue
		}
		if _, err := c.Write([]byte(fmt.Sprintf("flood %d", i))); err == nil {
			sent++
		}
		c.Close()
	}
	return sent
}

// TestUDPFloodFromOneAddress: 6 000 datagrams from 6 000 ports of one
// address (127.0.0.2), at 1 000 a second, against the defaults. Safe
// behaviour: the per-source cap keeps that address to 64 flows (the rest
// is dropped and counted, and Diagnose names the cap); normal TCP, HTTP and
// UDP clients from 127.0.0.1 keep at least 99 % success throughout; the
// normal UDP client's flow is never evicted; every listener serves
// afterwards and none ever failed to accept.
func TestUDPFloodFromOneAddress(t *testing.T) {
	w := newWorld(t)
	c := startChild(t, w, spec{NoFile: floodLimit})
	serveAll(t, c, 10*time.Second)
	n := startNormalClients(t, c)
	time.Sleep(3 * time.Second) // the normal UDP flow becomes two-way: answered, and used 2 s later
	n.reset()
	sent := udpFlood(t, c.addrs["udp"], 6000, 1000, func(i int) *net.UDPAddr {
		return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 20000 + i}
	})
	require.Greater(t, sent, 5000)
	n.check(t)
	r := c.report()
	assert.Greater(t, r.Listeners["udp"].Refused["source_limit"], uint64(4000), "the flood beyond the cap is dropped")
	assert.True(t, hasPrefix(r.Limits, "per-source cap: "), "Diagnose names the cap: %q", r.Limits)
	assert.Equal(t, 1, w.udp.sockets("normal"), "the normal UDP client kept its flow")
	serveAll(t, c, 10*time.Second)
	for _, k := range tcpKinds {
		assert.Zero(t, c.report().Listeners[k].AcceptErrors)
	}
}

// TestUDPFloodFromManyAddresses: 6 000 datagrams from 6 000 addresses of
// 127.1.0.0/16 (each a new flow), at 1 000 a second, against the defaults,
// with a target that answers every one. Safe behaviour: the flood fills
// the flow table and the descriptor budget with unreplied flows, which are
// evicted for the next ones (counted); the normal UDP client's flow, in use
// and answered, is never evicted; normal TCP, HTTP and UDP clients keep at
// least 99 % success; every listener serves afterwards and none ever
// failed to accept.
func TestUDPFloodFromManyAddresses(t *testing.T) {
	w := newWorld(t)
	c := startChild(t, w, spec{NoFile: floodLimit})
	serveAll(t, c, 10*time.Second)
	n := startNormalClients(t, c)
	time.Sleep(3 * time.Second) // the normal UDP flow becomes two-way
	n.reset()
	sent := udpFlood(t, c.addrs["udp"], 6000, 1000, func(i int) *net.UDPAddr {
		return &net.UDPAddr{IP: net.IPv4(127, 1, byte(i>>8), byte(i))}
	})
	require.Greater(t, sent, 5000)
	n.check(t)
	r := c.report()
	evicted := r.Flows.UDP.EvictedFlowCount
	assert.Greater(t, evicted, uint64(1000), "unreplied flows made room for the next")
	assert.LessOrEqual(t, r.Descriptors.InUse, int64(r.Descriptors.Limit))
	// (Stats and Diagnose are read one after the other, while the
	// child may still be draining the flood: Diagnose's count may be
	// higher.)
	said := false
	for _, l := range r.Limits {
		var n uint64
		if _, err := fmt.Sscanf(l, "%d unreplied UDP flows evicted", &n); err == nil && n >= evicted {
			said = true
		}
	}
	assert.True(t, said, "Diagnose says so: %q", r.Limits)
	assert.Equal(t, 1, w.udp.sockets("normal"), "the normal UDP client kept its flow: a two-way flow is never evicted")
	serveAll(t, c, 10*time.Second)
	for _, k := range tcpKinds {
		assert.Zero(t, c.report().Listeners[k].AcceptErrors)
	}
}

// TestHeldTCPFloodFromOneAddress: 2 000 TCP connections from one address
// (127.0.0.2) opened and held for 5 s against the defaults. Safe
// behaviour: the per-source cap admits 64 of them and resets the rest
// (counted, named by Diagnose); normal TCP, HTTP and UDP clients from
// 127.0.0.1 keep at least 99 % success; once the flood lets go every
// listener serves, and none ever failed to accept.
func TestHeldTCPFloodFromOneAddress(t *testing.T) {
	w := newWorld(t)
	c := startChild(t, w, spec{NoFile: floodLimit})
	serveAll(t, c, 10*time.Second)
	n := startNormalClients(t, c)
	time.Sleep(3 * time.Second)
	n.reset()
	release := hold(t, c, "tcp", "127.0.0.2", 2000)
	r := c.waitReport("the flood refused", 30*time.Second, func(r report) bool {
		return r.Listeners["tcp"].Refused["source_limit"] > 1000
	})
	time.Sleep(5 * time.Second) // holding the flood while normal clients work
	n.check(t)
	assert.True(t, hasPrefix(r.Limits, "per-source cap: "), "Diagnose names the cap: %q", r.Limits)
	assert.LessOrEqual(t, r.Flows.TCP.ActiveFlowCount, uint64(64+10), "one address holds at most the cap (and the normal clients a few)")
	release()
	serveAll(t, c, 10*time.Second)
	r = c.report()
	for _, k := range tcpKinds {
		assert.Zero(t, r.Listeners[k].AcceptErrors)
	}
	assert.False(t, strings.Contains(c.logs.String(), "cannot accept"))
}
