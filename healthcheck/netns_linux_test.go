//go:build linux

package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/icmp"
	"golang.org/x/sys/unix"
)

// testNetns is a network namespace the test created, joined to the root
// namespace by a veth pair. Its addresses are private (10.0.0.0/8,
// fd00::/8) and exist only on that pair.
type testNetns struct {
	name       string
	ip         string     // path of the ip command
	host4, ns4 netip.Addr // root side, namespace side
	host6, ns6 netip.Addr // invalid when IPv6 could not be set up
}

// newNetns creates a namespace, named after the test process so parallel
// runs never collide, and deletes it when the test ends. It skips unless
// root with iproute2.
func newNetns(t *testing.T) *testNetns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and veth pairs")
	}
	ipCmd, err := exec.LookPath("/usr/sbin/ip")
	if err != nil {
		if ipCmd, err = exec.LookPath("ip"); err != nil {
			t.Skip("needs the ip command (iproute2)")
		}
	}
	// Names and subnets come from the process and the test name, so
	// concurrent test processes (and the other tests of this one, should a
	// cleanup fail) never collide.
	h := fnv.New32a()
	h.Write([]byte(t.Name()))
	pid, n := os.Getpid(), int(h.Sum32()%60)+1
	ns := &testNetns{
		name:  fmt.Sprintf("lbkit-hc-%d-%d", pid, n),
		ip:    ipCmd,
		host4: netip.AddrFrom4([4]byte{10, byte(pid >> 8), byte(pid), byte(4*n + 1)}),
		ns4:   netip.AddrFrom4([4]byte{10, byte(pid >> 8), byte(pid), byte(4*n + 2)}),
	}
	hostIf, nsIf := fmt.Sprintf("hc%dh%d", pid%100000, n), fmt.Sprintf("hc%dn%d", pid%100000, n)
	ns.must(t, "netns", "add", ns.name)
	t.Cleanup(func() { _ = ns.run("netns", "del", ns.name) })
	ns.must(t, "link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", ns.name)
	t.Cleanup(func() { _ = ns.run("link", "del", hostIf) })
	ns.must(t, "addr", "add", ns.host4.String()+"/30", "dev", hostIf)
	ns.must(t, "link", "set", hostIf, "up")
	ns.must(t, "-n", ns.name, "addr", "add", ns.ns4.String()+"/30", "dev", nsIf)
	ns.must(t, "-n", ns.name, "link", "set", nsIf, "up")
	ns.must(t, "-n", ns.name, "link", "set", "lo", "up")

	h6 := netip.MustParseAddr(fmt.Sprintf("fd6c:626b:%x:%x::1", pid&0xffff, n))
	n6 := netip.MustParseAddr(fmt.Sprintf("fd6c:626b:%x:%x::2", pid&0xffff, n))
	if ns.run("addr", "add", h6.String()+"/64", "dev", hostIf, "nodad") == nil &&
		ns.run("-n", ns.name, "addr", "add", n6.String()+"/64", "dev", nsIf, "nodad") == nil {
		ns.host6, ns.ns6 = h6, n6
	}
	return ns
}

func (ns *testNetns) run(args ...string) error {
	out, err := exec.Command(ns.ip, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (ns *testNetns) must(t *testing.T, args ...string) {
	t.Helper()
	require.NoError(t, ns.run(args...))
}

// sysctl sets a sysctl inside the namespace only.
func (ns *testNetns) sysctl(t *testing.T, key, value string) {
	t.Helper()
	out, err := exec.Command(ns.ip, "netns", "exec", ns.name, "sysctl", "-w", key+"="+value).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// do runs f on an OS thread that has joined the namespace, so sockets f
// opens live there (and stay there afterwards).
func (ns *testNetns) do(f func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked if we cannot go back: the thread then dies with us
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + ns.name)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := setns(target.Fd()); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns.name, err)
			return
		}
		f()
		if err := setns(self.Fd()); err != nil {
			errc <- fmt.Errorf("setns back: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	return <-errc
}

func setns(fd uintptr) error { return unix.Setns(int(fd), unix.CLONE_NEWNET) }

// TestUDPCheckInNetns runs the UDP checker from the root namespace against
// the far end of a veth pair, whose kernel answers ICMP echo and port
// unreachable, then against the same end with echo replies turned off.
func TestUDPCheckInNetns(t *testing.T) {
	ns := newNetns(t)
	u := newUDPOrSkip(t, UDPConfig{})

	type family struct {
		name, ignore string
		target       netip.Addr
	}
	fams := []family{{"IPv4", "net.ipv4.icmp_echo_ignore_all", ns.ns4}}
	if ns.ns6.IsValid() {
		fams = append(fams, family{"IPv6", "net.ipv6.icmp.echo_ignore_all", ns.ns6})
	} else {
		t.Log("IPv6 could not be set up on the veth pair: IPv4 only")
	}
	for _, f := range fams {
		t.Run(f.name, func(t *testing.T) {
			// A silent UDP service inside the namespace.
			var pc net.PacketConn
			var err error
			require.NoError(t, ns.do(func() { pc, err = net.ListenPacket("udp", net.JoinHostPort(f.target.String(), "0")) }))
			require.NoError(t, err)
			defer pc.Close()
			open := Target{ID: "open", Addr: pc.LocalAddr().String()}
			closed := Target{ID: "closed", Addr: net.JoinHostPort(f.target.String(), "9")} // discard: nothing listens

			require.NoError(t, u.Check(timeoutCtx(t, 500*time.Millisecond), open), "echo reply, then silence")
			err = u.Check(timeoutCtx(t, wait), closed)
			assert.Equal(t, "ICMP port unreachable", Reason(err), "echo reply, then port unreachable")

			ns.sysctl(t, f.ignore, "1")
			defer ns.sysctl(t, f.ignore, "0")
			for _, target := range []Target{open, closed} {
				ctx, cancel := ContextWithTimeout(context.Background(), 300*time.Millisecond)
				err = u.Check(ctx, target)
				cancel()
				assert.Equal(t, "no ICMP echo reply in 300ms", Reason(err), target.ID)
				assert.ErrorIs(t, err, ErrNoEchoReply)
			}
		})
	}
}

// TestMonitorUDPInNetns runs a Monitor with the UDP checker against a
// target whose ICMP echo stops being answered.
func TestMonitorUDPInNetns(t *testing.T) {
	ns := newNetns(t)
	u := newUDPOrSkip(t, UDPConfig{})
	h := newHarness(t, u, WithInterval(200*time.Millisecond), WithTimeout(150*time.Millisecond), WithRetries(1))
	var pc net.PacketConn
	var err error
	require.NoError(t, ns.do(func() { pc, err = net.ListenPacket("udp", net.JoinHostPort(ns.ns4.String(), "0")) }))
	require.NoError(t, err)
	defer pc.Close()
	require.NoError(t, h.Add(Target{ID: "dns", Addr: pc.LocalAddr().String()}))
	c := h.change(t)
	assert.Equal(t, Healthy, c.New.State)

	ns.sysctl(t, "net.ipv4.icmp_echo_ignore_all", "1")
	c = h.change(t)
	assert.Equal(t, Unhealthy, c.New.State)
	assert.Equal(t, "no ICMP echo reply in 150ms", c.Reason)
	assert.Equal(t, "no ICMP echo reply in 150ms", mustStatus(t, h.Monitor, "dns").Reason)
}

// TestPingSocketInNetns exercises the unprivileged path for real: raw
// sockets are refused (as for a normal user), and ping sockets are opened
// inside a namespace whose net.ipv4.ping_group_range allows them, without
// touching the host's setting.
func TestPingSocketInNetns(t *testing.T) {
	ns := newNetns(t)
	ns.sysctl(t, "net.ipv4.ping_group_range", "0 2147483647")
	var tried []string
	listen := func(network, addr string) (pc *icmp.PacketConn, err error) {
		tried = append(tried, network)
		if strings.HasPrefix(network, "ip") {
			return nil, os.NewSyscallError("socket", syscall.EPERM)
		}
		if derr := ns.do(func() { pc, err = icmp.ListenPacket(network, addr) }); derr != nil {
			return nil, derr
		}
		return pc, err
	}
	u, err := NewUDP(UDPConfig{listen: listen})
	require.NoError(t, err)
	defer u.Close()
	assert.False(t, u.Privileged())
	assert.Equal(t, []string{"ip4:icmp", "udp4", "ip6:ipv6-icmp", "udp6"}, tried)

	targets := []netip.Addr{netip.MustParseAddr("127.0.0.1"), ns.ns4}
	sockets := []*icmpSocket{u.v4, u.v4}
	if u.v6 != nil {
		targets = append(targets, netip.IPv6Loopback())
		sockets = append(sockets, u.v6)
	}
	for i, ip := range targets {
		require.NoError(t, sockets[i].echo(timeoutCtx(t, wait), ip), "echo %v over a ping socket", ip)
	}
	ns.sysctl(t, "net.ipv4.icmp_echo_ignore_all", "1")
	err = u.v4.echo(timeoutCtx(t, 200*time.Millisecond), netip.MustParseAddr("127.0.0.1"))
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "echo ignored: %v", err)
}
