package healthcheck

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Protocol numbers of ICMP and ICMPv6, for icmp.ParseMessage.
const (
	protoICMP   = 1
	protoICMPv6 = 58
)

// maxReadErrors is how many consecutive read errors an ICMP socket's reader
// tolerates before it gives up and fails every later echo with the last
// error, rather than spinning on a broken socket.
const maxReadErrors = 64

// listenFunc opens an ICMP endpoint; icmp.ListenPacket, or a test's
// replacement.
type listenFunc func(network, address string) (*icmp.PacketConn, error)

// icmpSocket sends echo requests for many concurrent checks on one socket
// of one address family and hands each reply to the check waiting for it.
//
// One shared socket per family, rather than one per check, because a raw
// socket receives a copy of every ICMP message the host gets: with a socket
// per check, N concurrent checks would each parse the replies of all N
// (N² work) and hold N descriptors. Replies are matched by sequence number
// (and, on raw sockets, the identifier; ping sockets get only their own
// replies from the kernel), then by the peer address and a nonce in the
// payload, so a stale reply to an abandoned request never passes for a new
// one.
type icmpSocket struct {
	pc    *icmp.PacketConn
	v6    bool
	raw   bool // raw socket; false: unprivileged ping socket
	id    int  // echo identifier on a raw socket; the kernel sets it on ping sockets
	nonce atomic.Uint64
	done  chan struct{} // closed when the reader returns

	mu      sync.Mutex // guards seq, waiting and readErr
	seq     uint16
	waiting map[uint16]*echoWait
	readErr error // set when the reader gave up
}

// echoWait is one check waiting for its echo reply.
type echoWait struct {
	peer  netip.Addr
	nonce uint64
	got   chan struct{} // buffered 1: the reader never blocks on it
}

// openICMP opens an ICMP socket for one family: raw if the process may, else
// an unprivileged ping socket. The error explains both failures.
func openICMP(listen listenFunc, v6 bool) (*icmpSocket, error) {
	rawNet, pingNet, addr := "ip4:icmp", "udp4", "0.0.0.0"
	if v6 {
		rawNet, pingNet, addr = "ip6:ipv6-icmp", "udp6", "::"
	}
	s := &icmpSocket{v6: v6, waiting: make(map[uint16]*echoWait), done: make(chan struct{})}
	pc, rawErr := listen(rawNet, addr)
	if rawErr == nil {
		s.raw, s.id = true, int(rand.N[uint16](1<<16-1))+1
	} else {
		var pingErr error
		pc, pingErr = listen(pingNet, addr)
		if pingErr != nil {
			return nil, fmt.Errorf("raw socket: %v (needs root or CAP_NET_RAW); ping socket: %v (needs the process's group in net.ipv4.ping_group_range)", rawErr, pingErr)
		}
	}
	s.pc = pc
	if s.raw { // best effort: let the kernel drop every ICMP message but echo replies
		if v6 {
			var f ipv6.ICMPFilter
			f.SetAll(true)
			f.Accept(ipv6.ICMPTypeEchoReply)
			_ = pc.IPv6PacketConn().SetICMPFilter(&f)
		} else {
			var f ipv4.ICMPFilter
			f.SetAll(true)
			f.Accept(ipv4.ICMPTypeEchoReply)
			_ = pc.IPv4PacketConn().SetICMPFilter(&f)
		}
	}
	go s.read()
	return s, nil
}

// close closes the socket and waits for its reader.
func (s *icmpSocket) close() error {
	err := s.pc.Close()
	<-s.done
	return err
}

// echo sends one echo request to ip and waits for its reply or the end of
// ctx (whose error it returns).
func (s *icmpSocket) echo(ctx context.Context, ip netip.Addr) error {
	w := &echoWait{peer: ip, nonce: s.nonce.Add(1), got: make(chan struct{}, 1)}
	seq, err := s.register(w)
	if err != nil {
		return err
	}
	defer s.unregister(seq)

	var data [16]byte
	binary.BigEndian.PutUint64(data[:8], w.nonce)
	copy(data[8:], "lbkit-hc")
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: s.id, Seq: int(seq), Data: data[:]}}
	if s.v6 {
		msg.Type = ipv6.ICMPTypeEchoRequest // the kernel fills in the ICMPv6 checksum
	}
	b, err := msg.Marshal(nil)
	if err != nil {
		return err
	}
	var dst net.Addr = &net.IPAddr{IP: ip.AsSlice(), Zone: ip.Zone()}
	if !s.raw {
		dst = &net.UDPAddr{IP: ip.AsSlice(), Zone: ip.Zone()}
	}
	if _, err := s.pc.WriteTo(b, dst); err != nil {
		return err
	}
	select {
	case <-w.got:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.readErr != nil {
			return fmt.Errorf("ICMP socket failed: %w", s.readErr)
		}
		return net.ErrClosed
	}
}

// register reserves a free sequence number for w.
func (s *icmpSocket) register(w *echoWait) (uint16, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range 1 << 16 {
		s.seq++
		if _, busy := s.waiting[s.seq]; !busy {
			s.waiting[s.seq] = w
			return s.seq, nil
		}
	}
	return 0, errors.New("65536 ICMP echo requests already in flight")
}

func (s *icmpSocket) unregister(seq uint16) {
	s.mu.Lock()
	delete(s.waiting, seq)
	s.mu.Unlock()
}

// read receives ICMP messages until the socket is closed and wakes the
// check each echo reply belongs to.
func (s *icmpSocket) read() {
	defer close(s.done)
	buf := make([]byte, 1500)
	errs := 0
	for {
		n, peer, err := s.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if errs++; errs >= maxReadErrors {
				s.mu.Lock()
				s.readErr = err
				s.mu.Unlock()
				return
			}
			continue
		}
		errs = 0
		s.deliver(buf[:n], peer)
	}
}

// deliver matches one received message to a waiting check.
func (s *icmpSocket) deliver(b []byte, peer net.Addr) {
	proto, reply := protoICMP, icmp.Type(ipv4.ICMPTypeEchoReply)
	if s.v6 {
		proto, reply = protoICMPv6, ipv6.ICMPTypeEchoReply
	}
	m, err := icmp.ParseMessage(proto, b)
	if err != nil || m.Type != reply || m.Code != 0 {
		return
	}
	e, ok := m.Body.(*icmp.Echo)
	if !ok || len(e.Data) < 8 || (s.raw && e.ID != s.id) {
		return
	}
	var from netip.Addr
	switch a := peer.(type) {
	case *net.IPAddr:
		from, _ = netip.AddrFromSlice(a.IP)
	case *net.UDPAddr:
		from, _ = netip.AddrFromSlice(a.IP)
	}
	nonce := binary.BigEndian.Uint64(e.Data[:8])
	s.mu.Lock()
	w := s.waiting[uint16(e.Seq)]
	s.mu.Unlock()
	if w == nil || w.nonce != nonce || from.Unmap() != w.peer.WithZone("").Unmap() {
		return
	}
	select {
	case w.got <- struct{}{}:
	default:
	}
}
