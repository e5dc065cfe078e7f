package hostile

import (
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The child's descriptor limit in these cases: small, so that a few hundred
// connections exhaust it.
const exhaustLimit = 128

// tcpKinds are the listeners that accept connections.
var tcpKinds = []string{"tcp", "tls", "http", "httploop", "https"}

// hold opens n clients of listener kind from address from and keeps them
// until the returned function is called: TCP connections that send nothing
// (a TLS or HTTPS client that never starts its handshake, an HTTP client
// that never sends a request, a TCP client whose flow idles), or UDP
// sockets that each sent one datagram (a flow apiece). Clients the
// kernel refuses are not counted.
func hold(t *testing.T, c *child, kind, from string, n int) (release func()) {
	t.Helper()
	var conns []net.Conn
	for range n {
		var conn net.Conn
		var err error
		if kind == "udp" {
			var laddr *net.UDPAddr
			if from != "" {
				laddr = &net.UDPAddr{IP: net.ParseIP(from)}
			}
			raddr, _ := net.ResolveUDPAddr("udp", c.addrs["udp"])
			var uc *net.UDPConn
			if uc, err = net.DialUDP("udp", laddr, raddr); err == nil {
				_, _ = uc.Write([]byte("hold"))
				conn = uc
			}
		} else {
			conn, err = dialer(from).Dial("tcp", c.addrs[kind])
		}
		if err == nil {
			conns = append(conns, conn)
		}
	}
	released := false
	release = func() {
		if !released {
			released = true
			for _, conn := range conns {
				conn.Close()
			}
		}
	}
	t.Cleanup(release)
	return release
}

var cannotAccept = regexp.MustCompile(`^listener "(\w+)": cannot accept: too many open files, since \d\d:\d\d:\d\d \(\d+ failed accepts so far; retrying with back-off\)$`)

// TestDescriptorExhaustionAndRecovery: with no descriptor budget, a client
// that holds connections (or UDP flows) through one listener exhausts the
// process's descriptors. Safe behaviour: no accept loop ends; while the
// descriptors are gone every listener with a client waiting says so in
// Diagnose ("cannot accept: too many open files, since ...") and counts
// its failed accepts; once the clients let go, every listener of every
// kind serves again within 30 s, by itself, and the episodes are over. The
// episode is logged once when it starts and once when it ends, not once
// per failed accept.
func TestDescriptorExhaustionAndRecovery(t *testing.T) {
	w := newWorld(t)
	for _, kind := range listenerNames {
		t.Run(kind, func(t *testing.T) {
			off := 0
			// UDP flows are held by their idle timeout only: long enough
			// to look, short enough to wait out.
			c := startChild(t, w, spec{NoFile: exhaustLimit, Budget: &off, UDPIdle: 10 * time.Second, Unreplied: 10 * time.Second,
				HeaderTimeout: 5 * time.Minute, RequestTimeout: 5 * time.Minute})
			serveAll(t, c, 10*time.Second)

			release := hold(t, c, kind, "", 2*exhaustLimit)
			c.waitReport("the descriptors exhausted", 60*time.Second, func(r report) bool {
				// A failed accept, or a failed socket to a target.
				return r.Listeners[kind].AcceptFailing || r.Listeners["udp"].Refused["no_target"] > 0 || r.Listeners["tcp"].Refused["no_target"] > 0
			})
			// Clients of every accepting listener now wait in its
			// backlog; taking one needs a descriptor there is none of.
			waiting := hold(t, c, "tcp", "", 2)
			for _, k := range tcpKinds[1:] {
				w := hold(t, c, k, "", 2)
				defer w()
			}
			r := c.waitReport("every listener failing to accept, a few times", 60*time.Second, func(r report) bool {
				for _, k := range tcpKinds {
					if lr := r.Listeners[k]; !lr.AcceptFailing || lr.AcceptErrors < 3 {
						return false
					}
				}
				return true
			})
			failing := map[string]bool{}
			for _, p := range r.Problems {
				if m := cannotAccept.FindStringSubmatch(p); m != nil {
					failing[m[1]] = true
				}
			}
			for _, k := range tcpKinds {
				assert.True(t, failing[k], "Diagnose says listener %s cannot accept; problems: %q", k, r.Problems)
				assert.Equal(t, "too many open files", r.Listeners[k].AcceptError)
			}
			if kind == "udp" {
				assert.NotZero(t, r.Listeners["udp"].Refused["no_target"], "UDP flows that could not get a socket are counted")
			}

			release()
			waiting()
			serveAll(t, c, 30*time.Second)
			r = c.waitReport("every episode over", 30*time.Second, func(r report) bool {
				for _, k := range tcpKinds {
					if r.Listeners[k].AcceptFailing {
						return false
					}
				}
				return true
			})
			logs := c.logs.String()
			for _, k := range tcpKinds {
				lr := r.Listeners[k]
				assert.NotZero(t, lr.AcceptErrors, "listener %s counted its failed accepts", k)
				starts := countLines(logs, "cannot accept connections", "listener="+k+" ")
				ends := countLines(logs, "accepting connections again", "listener="+k+" ")
				assert.GreaterOrEqual(t, starts, 1, "listener %s logged its episode", k)
				assert.Equal(t, starts, ends, "listener %s logged the end of each episode", k)
				assert.Less(t, uint64(starts), lr.AcceptErrors, "listener %s logged episodes, not each of its %d failed accepts", k, lr.AcceptErrors)
			}
			for _, p := range r.Problems {
				assert.NotRegexp(t, cannotAccept, p)
			}
		})
	}
}

// countLines counts the log lines that contain every one of parts.
func countLines(logs string, parts ...string) int {
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// TestDescriptorBudgetPreventsExhaustion: with the defaults, the same
// clients (from one address, 127.0.0.2) never exhaust the descriptors:
// the per-source cap (TCP, UDP) or the descriptor budget (TLS handshakes and
// HTTP connections, which are not flows yet) refuses the excess, counted
// by reason and named by Diagnose, and no listener ever fails to accept.
// Where the per-source cap is what binds, the other listeners serve
// clients from other addresses all along; after the clients let go, every
// listener serves at once.
func TestDescriptorBudgetPreventsExhaustion(t *testing.T) {
	w := newWorld(t)
	for _, kind := range listenerNames {
		t.Run(kind, func(t *testing.T) {
			c := startChild(t, w, spec{NoFile: exhaustLimit, UDPIdle: 2 * time.Second, Unreplied: time.Second,
				HeaderTimeout: 5 * time.Minute, RequestTimeout: 5 * time.Minute})
			serveAll(t, c, 10*time.Second)
			release := hold(t, c, kind, "127.0.0.2", 2*exhaustLimit)
			reason, limit := "descriptors", "descriptor budget: "
			if kind == "tcp" || kind == "udp" {
				reason, limit = "source_limit", "per-source cap: "
			}
			r := c.waitReport("the excess refused", 60*time.Second, func(r report) bool {
				return r.Listeners[kind].Refused[reason] > 0
			})
			assert.True(t, hasPrefix(r.Limits, limit), "Diagnose names the limit: %q", r.Limits)
			assert.LessOrEqual(t, r.Descriptors.InUse, int64(r.Descriptors.Limit))
			if reason == "source_limit" {
				serveAll(t, c, 10*time.Second) // others are served meanwhile
			}
			release()
			serveAll(t, c, 10*time.Second)
			r = c.report()
			for _, k := range tcpKinds {
				assert.Zero(t, r.Listeners[k].AcceptErrors, "listener %s never failed to accept", k)
			}
		})
	}
}

func hasPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}
