package healthcheck

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// newUDPOrSkip builds a UDP checker, or skips when this process may open
// no ICMP socket (not root, ping sockets not allowed for its group).
func newUDPOrSkip(t *testing.T, cfg UDPConfig) *UDP {
	t.Helper()
	u, err := NewUDP(cfg)
	if errors.Is(err, ErrNoICMP) {
		t.Skipf("needs an ICMP socket: %v", err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { u.Close() })
	return u
}

// udpListener is a UDP socket on loopback that reads datagrams and, if
// reply is set, answers each one with it.
func udpListener(t *testing.T, addr string, reply []byte) (string, <-chan []byte) {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	require.NoError(t, err)
	got := make(chan []byte, 10)
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			got <- append([]byte(nil), buf[:n]...)
			if reply != nil {
				_, _ = pc.WriteTo(reply, from)
			}
		}
	})
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	return pc.LocalAddr().String(), got
}

func TestUDPPortOpenVersusClosed(t *testing.T) {
	u := newUDPOrSkip(t, UDPConfig{Payload: []byte("ping")})
	for _, host := range []string{"127.0.0.1", "[::1]"} {
		t.Run(host, func(t *testing.T) {
			silent, got := udpListener(t, host+":0", nil)
			closed := closedAddr(t, "udp", host+":0")

			// Open and silent: healthy once the timeout passes.
			require.NoError(t, u.Check(timeoutCtx(t, 500*time.Millisecond), Target{ID: "a", Addr: silent}))
			assert.Equal(t, "ping", string(<-got), "the probe carries the payload")

			err := u.Check(timeoutCtx(t, wait), Target{ID: "a", Addr: closed})
			assert.Equal(t, "ICMP port unreachable", Reason(err))
			assert.ErrorIs(t, err, syscall.ECONNREFUSED)

			// A service that answers passes at once, long before its timeout.
			answering, _ := udpListener(t, host+":0", []byte("pong"))
			start := time.Now()
			require.NoError(t, u.Check(timeoutCtx(t, 5*time.Second), Target{ID: "a", Addr: answering}))
			assert.Less(t, time.Since(start), 5*time.Second, "an answer ends the check before its timeout")
		})
	}
}

func TestUDPHealthPortAndNames(t *testing.T) {
	silent, _ := udpListener(t, "127.0.0.1:0", nil)
	closed := closedAddr(t, "udp", "127.0.0.1:0")
	u := newUDPOrSkip(t, UDPConfig{Port: portOf(t, closed)})
	err := u.Check(timeoutCtx(t, wait), Target{ID: "a", Addr: silent})
	assert.Equal(t, "ICMP port unreachable", Reason(err), "the probe goes to Port, not the traffic port")

	u = newUDPOrSkip(t, UDPConfig{})
	_, port, _ := net.SplitHostPort(closed)
	err = u.Check(timeoutCtx(t, wait), Target{ID: "a", Addr: "localhost:" + port})
	assert.Equal(t, "ICMP port unreachable", Reason(err), "host names are resolved")
	assert.ErrorIs(t, u.Check(timeoutCtx(t, wait), Target{ID: "a", Addr: "nope"}), ErrInvalidTarget)
}

func TestUDPClosed(t *testing.T) {
	u := newUDPOrSkip(t, UDPConfig{})
	require.NoError(t, u.Close())
	require.NoError(t, u.Close(), "Close twice is fine")
	err := u.Check(timeoutCtx(t, wait), Target{ID: "a", Addr: "127.0.0.1:9"})
	assert.Equal(t, "ICMP socket closed", Reason(err))
}

func TestUDPCanceledWhileWaitingForSilence(t *testing.T) {
	u := newUDPOrSkip(t, UDPConfig{})
	silent, got := udpListener(t, "127.0.0.1:0", nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- u.Check(ctx, Target{ID: "a", Addr: silent}) }()
	<-got // the probe arrived: the check now waits for silence
	cancel()
	select {
	case err := <-errc:
		assert.Equal(t, "check canceled", Reason(err), "canceled is not silence: not healthy")
	case <-time.After(wait):
		t.Fatal("cancel did not end the probe")
	}
}

func TestEchoManyConcurrent(t *testing.T) {
	u := newUDPOrSkip(t, UDPConfig{})
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := range 400 {
		ip, s := netip.MustParseAddr("127.0.0.1"), u.v4
		if i%2 == 1 {
			ip, s = netip.IPv6Loopback(), u.v6
		}
		if s == nil {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := s.echo(ctx, ip); err != nil {
				errs <- fmt.Errorf("echo %v: %w", ip, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, s := range []*icmpSocket{u.v4, u.v6} {
		if s != nil {
			s.mu.Lock()
			assert.Empty(t, s.waiting, "every wait unregistered")
			s.mu.Unlock()
		}
	}
}

func TestEchoReplyMatching(t *testing.T) {
	s := &icmpSocket{raw: true, id: 7, waiting: map[uint16]*echoWait{}}
	peer := netip.MustParseAddr("127.0.0.1")
	w := &echoWait{peer: peer, nonce: 42, got: make(chan struct{}, 1)}
	seq, err := s.register(w)
	require.NoError(t, err)
	reply := func(id, seq int, nonce uint64) []byte {
		data := make([]byte, 16)
		binary.BigEndian.PutUint64(data, nonce)
		b, err := (&icmp.Message{Type: ipv4.ICMPTypeEchoReply, Body: &icmp.Echo{ID: id, Seq: seq, Data: data}}).Marshal(nil)
		require.NoError(t, err)
		return b
	}
	from := &net.IPAddr{IP: net.IPv4(127, 0, 0, 1)}
	for name, tc := range map[string]struct {
		b    []byte
		from net.Addr
	}{
		"other identifier":   {reply(8, int(seq), 42), from},
		"other sequence":     {reply(7, int(seq)+1, 42), from},
		"stale nonce":        {reply(7, int(seq), 41), from},
		"other peer":         {reply(7, int(seq), 42), &net.IPAddr{IP: net.IPv4(127, 0, 0, 2)}},
		"request, not reply": {func() []byte { b := reply(7, int(seq), 42); b[0] = 8; return b }(), from},
		"truncated":          {reply(7, int(seq), 42)[:10], from},
		"garbage":            {[]byte{0xff}, from},
	} {
		s.deliver(tc.b, tc.from)
		assert.Empty(t, w.got, name)
	}
	s.deliver(reply(7, int(seq), 42), from)
	assert.Len(t, w.got, 1, "the right reply is delivered")
}

// TestNewUDPWithoutICMPSocket checks the error when neither a raw nor a ping
// socket may be opened: it must say so and name the fix.
func TestNewUDPWithoutICMPSocket(t *testing.T) {
	var tried []string
	deny := func(network, _ string) (*icmp.PacketConn, error) {
		tried = append(tried, network)
		errno := syscall.EACCES
		if strings.HasPrefix(network, "ip") {
			errno = syscall.EPERM
		}
		return nil, &net.OpError{Op: "listen", Net: network, Err: os.NewSyscallError("socket", errno)}
	}
	u, err := NewUDP(UDPConfig{listen: deny})
	require.ErrorIs(t, err, ErrNoICMP)
	assert.Nil(t, u)
	assert.Equal(t, []string{"ip4:icmp", "udp4", "ip6:ipv6-icmp", "udp6"}, tried, "raw first, then ping sockets")
	for _, want := range []string{
		"operation not permitted (needs root or CAP_NET_RAW)",
		"permission denied (needs the process's group in net.ipv4.ping_group_range)",
		`sysctl -w net.ipv4.ping_group_range="0 2147483647"`,
		"IPv4:", "IPv6:",
	} {
		assert.Contains(t, err.Error(), want)
	}

	_, err = NewUDP(UDPConfig{Port: 65536})
	assert.ErrorIs(t, err, ErrInvalidOption)
}

// TestUDPOneFamilyMissing: with an IPv4 socket only, IPv6 targets fail with
// the reason, and IPv4 ones work.
func TestUDPOneFamilyMissing(t *testing.T) {
	only4 := func(network, addr string) (*icmp.PacketConn, error) {
		if strings.HasSuffix(network, "6") || strings.HasPrefix(network, "ip6") {
			return nil, os.NewSyscallError("socket", syscall.EAFNOSUPPORT)
		}
		return icmp.ListenPacket(network, addr)
	}
	u, err := NewUDP(UDPConfig{listen: only4})
	if errors.Is(err, ErrNoICMP) {
		t.Skipf("needs an ICMP socket: %v", err)
	}
	require.NoError(t, err)
	defer u.Close()
	err = u.Check(timeoutCtx(t, wait), Target{ID: "a", Addr: "[::1]:9"})
	assert.ErrorIs(t, err, ErrNoICMP)
	assert.True(t, strings.HasPrefix(Reason(err), "no ICMPv6 socket: raw socket: socket: address family not supported"), Reason(err))
	closed := closedAddr(t, "udp", "127.0.0.1:0")
	assert.Equal(t, "ICMP port unreachable", Reason(u.Check(timeoutCtx(t, wait), Target{ID: "a", Addr: closed})))
}

// FuzzEchoDeliver feeds arbitrary ICMP messages to the reply matcher, the
// one parser of network input in the UDP checker: it must never panic, and
// must wake a waiting check only for a well-formed echo reply (code 0) with
// the right identifier, sequence number, nonce and peer. The checksum is
// not checked here: the kernel computes it for ICMPv6 and replies are
// matched by nonce anyway.
func FuzzEchoDeliver(f *testing.F) {
	good := func(typ byte, id, seq uint16, nonce uint64) []byte {
		b := []byte{typ, 0, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq)}
		return binary.BigEndian.AppendUint64(b, nonce)
	}
	f.Add(good(0, 7, 1, 42), false)  // ICMP echo reply
	f.Add(good(129, 7, 1, 42), true) // ICMPv6 echo reply
	f.Add(good(8, 7, 1, 42), false)  // echo request
	f.Add(good(0, 7, 1, 41), false)  // stale nonce
	f.Add(good(0, 7, 1, 42)[:9], false)
	f.Add([]byte{3, 3, 0, 0, 0, 0, 0, 0, 0x45, 0, 0, 28}, false) // port unreachable with a quote
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) {
		s := &icmpSocket{raw: true, v6: v6, id: 7, waiting: map[uint16]*echoWait{}}
		w := &echoWait{peer: netip.MustParseAddr("127.0.0.1"), nonce: 42, got: make(chan struct{}, 1)}
		if v6 {
			w.peer = netip.IPv6Loopback()
		}
		seq, err := s.register(w)
		if err != nil || seq != 1 {
			t.Fatalf("register: %d, %v", seq, err)
		}
		s.deliver(b, &net.IPAddr{IP: w.peer.AsSlice()})
		if len(w.got) == 0 {
			return
		}
		typ := byte(0)
		if v6 {
			typ = 129
		}
		if len(b) < 16 || b[0] != typ || b[1] != 0 || binary.BigEndian.Uint16(b[4:]) != 7 ||
			binary.BigEndian.Uint16(b[6:]) != 1 || binary.BigEndian.Uint64(b[8:]) != 42 {
			t.Fatalf("woke a check for % x", b)
		}
	})
}
