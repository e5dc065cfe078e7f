package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
)

// UDPConfig configures a UDP checker built by NewUDP. The zero UDPConfig is
// valid: probe the traffic port with an empty datagram.
type UDPConfig struct {
	// Port is the UDP port to probe; 0 means the target's traffic port.
	Port int

	// Payload is the datagram sent as the UDP probe. Default: empty. Set it
	// to something the service ignores or answers (a DNS query for a DNS
	// server); an answer makes the check pass at once.
	Payload []byte

	// listen opens ICMP endpoints; nil means icmp.ListenPacket. Tests
	// replace it to open sockets inside a network namespace or to refuse.
	listen listenFunc
}

// UDP checks a UDP service the way the reference load balancers do, since
// UDP alone cannot tell a silent service from a dead one:
//
//  1. an ICMP echo request to the target's host; no echo reply within the
//     timeout: unhealthy ("no ICMP echo reply in 3s");
//  2. then a UDP datagram to the service port from a connected socket; an
//     ICMP port unreachable in answer (reported by the kernel as
//     ECONNREFUSED) within the timeout: unhealthy ("ICMP port
//     unreachable"); silence or a reply: healthy.
//
// A passing check therefore lasts its whole timeout unless the service
// answers: silence is the success signal. Size the Monitor's concurrency
// limit for it (see WithMaxConcurrent). Targets may rate-limit ICMP
// (net.ipv4.icmp_ratelimit) and may ignore echo requests
// (net.ipv4.icmp_echo_ignore_all=1), which fails the check; use generous
// timeouts, and check such targets over TCP or HTTP on another port instead.
//
// Build it with NewUDP and Close it when done; it is safe for concurrent
// use. IPv4 and IPv6 targets are both supported.
type UDP struct {
	port    int
	payload []byte
	v4, v6  *icmpSocket
	// err4 and err6 say why a family has no socket (the other family
	// opened, so NewUDP succeeded).
	err4, err6 error
	dialer     net.Dialer
	closeOnce  sync.Once
	closeErr   error
}

// NewUDP opens the ICMP sockets the checker shares between all its checks:
// a raw ICMP socket per address family when the process is privileged (root
// or CAP_NET_RAW), else an unprivileged ping socket. If neither kind can be
// opened for either family, it returns an error wrapping ErrNoICMP that says
// why and how to fix it.
func NewUDP(cfg UDPConfig) (*UDP, error) {
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("healthcheck: UDPConfig: %w: Port %d is out of range 0..65535", ErrInvalidOption, cfg.Port)
	}
	listen := cfg.listen
	if listen == nil {
		listen = icmp.ListenPacket
	}
	u := &UDP{port: cfg.Port, payload: append([]byte(nil), cfg.Payload...)}
	u.v4, u.err4 = openICMP(listen, false)
	u.v6, u.err6 = openICMP(listen, true)
	if u.v4 == nil && u.v6 == nil {
		return nil, fmt.Errorf("healthcheck: UDP checker: %w: IPv4: %v; IPv6: %v; "+
			"to fix, run with CAP_NET_RAW (e.g. setcap cap_net_raw+ep on the binary) "+
			"or allow unprivileged ping sockets for the process's group, e.g. "+
			`sysctl -w net.ipv4.ping_group_range="0 2147483647"`,
			ErrNoICMP, u.err4, u.err6)
	}
	return u, nil
}

// Privileged reports whether the checker uses raw ICMP sockets (true) or
// unprivileged ping sockets (false), for diagnosis.
func (u *UDP) Privileged() bool {
	if u.v4 != nil {
		return u.v4.raw
	}
	return u.v6.raw
}

// Close closes the checker's ICMP sockets. Checks in flight fail; later
// checks fail with "ICMP socket closed". Later calls return the first
// call's result.
func (u *UDP) Close() error {
	u.closeOnce.Do(func() {
		var errs []error
		for _, s := range []*icmpSocket{u.v4, u.v6} {
			if s != nil {
				if err := s.close(); err != nil {
					errs = append(errs, err)
				}
			}
		}
		u.closeErr = errors.Join(errs...)
	})
	return u.closeErr
}

// Check runs the echo, then the UDP probe, within ctx's deadline
// (DefaultTimeout if none).
func (u *UDP) Check(ctx context.Context, t Target) error {
	host, addr, err := checkAddr(t, u.port)
	if err != nil {
		return err
	}
	ctx, cancel, b := budget(ctx)
	defer cancel()
	ip, err := u.resolve(ctx, host)
	if err != nil {
		return fail(err, b)
	}
	s, why, family := u.v4, u.err4, "ICMP"
	if ip.Is6() {
		s, why, family = u.v6, u.err6, "ICMPv6"
	}
	if s == nil {
		return &CheckError{Reason: "no " + family + " socket: " + why.Error(), Err: ErrNoICMP}
	}
	if err := s.echo(ctx, ip); err != nil {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return &CheckError{Reason: "no ICMP echo reply in " + formatDuration(b), Err: ErrNoEchoReply}
		case errors.Is(err, net.ErrClosed):
			return &CheckError{Reason: "ICMP socket closed", Err: err}
		}
		return fail(err, b)
	}
	_, port, _ := net.SplitHostPort(addr)
	return u.probe(ctx, net.JoinHostPort(ip.String(), port), b)
}

// probe sends the payload from a connected UDP socket and waits until ctx's
// deadline for ICMP port unreachable (ECONNREFUSED on the next read).
func (u *UDP) probe(ctx context.Context, addr string, b time.Duration) error {
	conn, err := u.dialer.DialContext(ctx, "udp", addr)
	if err != nil {
		return fail(err, b)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Cancellation (target removed, Monitor closed) must end the read too.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(u.payload); err != nil {
		return u.probeResult(ctx, err, b)
	}
	var buf [512]byte
	_, err = conn.Read(buf[:])
	return u.probeResult(ctx, err, b)
}

func (u *UDP) probeResult(ctx context.Context, err error, b time.Duration) error {
	switch {
	case err == nil: // the service answered
		return nil
	case errors.Is(err, syscall.ECONNREFUSED):
		return &CheckError{Reason: "ICMP port unreachable", Err: err}
	case isTimeout(err):
		if errors.Is(ctx.Err(), context.Canceled) {
			return fail(context.Canceled, b)
		}
		return nil // silence until the deadline: the port is open
	}
	return fail(err, b)
}

// resolve returns the IP address of host, a literal or a name; of a name's
// addresses, the first of a family the checker has a socket for.
func (u *UDP) resolve(ctx context.Context, host string) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap(), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, ip := range ips {
		if ip = ip.Unmap(); ip.Is4() && u.v4 != nil || ip.Is6() && u.v6 != nil {
			return ip, nil
		}
	}
	return ips[0].Unmap(), nil
}
