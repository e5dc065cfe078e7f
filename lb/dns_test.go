package lb

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/dns/dnsmessage"
)

// dnsServer answers A, AAAA and SRV questions from maps, over UDP on
// 127.0.0.1, until the test ends. A name mapped to nil answers SERVFAIL.
type dnsServer struct {
	pc  net.PacketConn
	wg  sync.WaitGroup
	mu  sync.Mutex // guards the maps
	ips map[string][]netip.Addr
	srv map[string][]net.SRV
}

func newDNSServer(t *testing.T) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &dnsServer{pc: pc, ips: map[string][]netip.Addr{}, srv: map[string][]net.SRV{}}
	s.wg.Go(s.serve)
	t.Cleanup(func() { pc.Close(); s.wg.Wait() })
	return s
}

// resolver returns a resolver that asks only this server.
func (s *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", s.pc.LocalAddr().String())
	}}
}

func (s *dnsServer) setIPs(name string, ips ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ips == nil {
		s.ips[name] = nil
		return
	}
	var as []netip.Addr
	for _, ip := range ips {
		as = append(as, netip.MustParseAddr(ip))
	}
	s.ips[name] = as
}

func (s *dnsServer) setSRV(name string, rs ...net.SRV) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srv[name] = rs
}

func (s *dnsServer) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		if resp, err := s.answer(h, q); err == nil {
			s.pc.WriteTo(resp, from)
		}
	}
}

func (s *dnsServer) answer(h dnsmessage.Header, q dnsmessage.Question) ([]byte, error) {
	name := strings.TrimSuffix(q.Name.String(), ".")
	s.mu.Lock()
	ips, knownIP := s.ips[name]
	srvs, knownSRV := s.srv[name]
	s.mu.Unlock()
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RCode: dnsmessage.RCodeSuccess}
	switch {
	case knownIP && ips == nil:
		rh.RCode = dnsmessage.RCodeServerFailure
	case !knownIP && !knownSRV:
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 5}
	for _, ip := range ips {
		switch {
		case q.Type == dnsmessage.TypeA && ip.Is4():
			if err := b.AResource(rr, dnsmessage.AResource{A: ip.As4()}); err != nil {
				return nil, err
			}
		case q.Type == dnsmessage.TypeAAAA && ip.Is6():
			if err := b.AAAAResource(rr, dnsmessage.AAAAResource{AAAA: ip.As16()}); err != nil {
				return nil, err
			}
		}
	}
	if q.Type == dnsmessage.TypeSRV {
		for _, r := range srvs {
			target := dnsmessage.MustNewName(r.Target)
			if err := b.SRVResource(rr, dnsmessage.SRVResource{Priority: r.Priority, Weight: r.Weight, Port: r.Port, Target: target}); err != nil {
				return nil, err
			}
		}
	}
	return b.Finish()
}

func TestDNSSource(t *testing.T) {
	s := newDNSServer(t)
	s.setIPs("app.test", "127.0.0.2", "127.0.0.1", "::1", "127.0.0.1")
	src := &DNS{Name: "app.test", Port: 8080, Resolver: s.resolver()}
	ds, err := src.Targets(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []Discovered{{Addr: "127.0.0.1:8080", Weight: 1}, {Addr: "127.0.0.2:8080", Weight: 1}, {Addr: "[::1]:8080", Weight: 1}}, ds)

	v4 := &DNS{Name: "app.test", Port: 8080, Network: "ip4", Resolver: s.resolver()}
	ds, err = v4.Targets(context.Background())
	require.NoError(t, err)
	assert.Len(t, ds, 2)

	s.setIPs("app.test")
	_, err = src.Targets(context.Background())
	require.Error(t, err, "SERVFAIL is an error, so the group keeps its last good answer")
	_, err = (&DNS{Name: "missing.test", Port: 1, Resolver: s.resolver()}).Targets(context.Background())
	require.Error(t, err)
	assert.Equal(t, "dns A/AAAA app.test port 8080", src.String())
}

func TestDNSSRVSource(t *testing.T) {
	s := newDNSServer(t)
	s.setIPs("node1.test", "127.0.0.1")
	s.setIPs("node2.test", "127.0.0.2")
	s.setIPs("backup.test", "127.0.0.3")
	s.setSRV("_http._tcp.app.test",
		net.SRV{Target: "node1.test.", Port: 9001, Priority: 10, Weight: 500},
		net.SRV{Target: "node2.test.", Port: 9002, Priority: 10, Weight: 0},
		net.SRV{Target: "backup.test.", Port: 9003, Priority: 20, Weight: 5},
	)
	src := &DNSSRV{Service: "http", Proto: "tcp", Name: "app.test", Resolver: s.resolver()}
	ds, err := src.Targets(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []Discovered{{Addr: "127.0.0.1:9001", Weight: 100}, {Addr: "127.0.0.2:9002", Weight: 1}}, ds, "lowest priority value only; weights clamped to 1..100")
	assert.Equal(t, "_http._tcp.app.test", src.String())

	s.setSRV("_http._tcp.app.test")
	_, err = src.Targets(context.Background())
	require.Error(t, err)
}

// TestGroupFollowsDNS runs a group whose targets come from DNS through the
// real discovery loop: answers change, the group follows; the resolver
// fails, the group keeps what it had.
func TestGroupFollowsDNS(t *testing.T) {
	s := newDNSServer(t)
	a := newTCPTarget(t)
	_, port, _ := net.SplitHostPort(a.addr)
	s.setIPs("app.test", "127.0.0.1")
	src := &DNS{Name: "app.test", Port: atoi(t, port), Resolver: s.resolver()}
	g := startGroup(t, nil, WithoutHealthCheck(), WithDeregistrationDelay(-1), WithDiscovery(src, 10*time.Millisecond))
	require.Eventually(t, func() bool { return len(g.memberIDs()) == 1 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, []string{a.addr}, g.memberIDs())

	s.setIPs("app.test", "127.0.0.1", "::1")
	require.Eventually(t, func() bool { return len(g.memberIDs()) == 2 }, 10*time.Second, 5*time.Millisecond)

	s.setIPs("app.test") // SERVFAIL from now on
	require.Eventually(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.disco != nil && g.disco.lastErr != nil
	}, 10*time.Second, 5*time.Millisecond)
	assert.Len(t, g.memberIDs(), 2, "the last good answer is kept")
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	require.NoError(t, err)
	return n
}
