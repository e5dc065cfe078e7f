//go:build linux

package apiservertest

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// testNetns is a network namespace the test created, joined to the root
// namespace by a veth pair: the test's "pods" listen on its addresses,
// which the API server accepts as endpoints (it refuses loopback ones).
// The addresses are private (10.0.0.0/8, fd00::/8) and exist only on that
// pair. (The healthcheck package's tests have the same helper.)
type testNetns struct {
	name string
	ip   string       // path of the ip command
	pods []netip.Addr // namespace side, IPv4
	pod6 netip.Addr   // namespace side, IPv6; invalid when it could not be set up
}

// newNetns creates a namespace with pods IPv4 addresses, named after the
// test process so parallel runs never collide, and deletes it when the
// test ends. It skips unless root with iproute2.
func newNetns(t *testing.T, pods int) *testNetns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace and a veth pair: the API server refuses loopback endpoints")
	}
	ipCmd, err := exec.LookPath("/usr/sbin/ip")
	if err != nil {
		if ipCmd, err = exec.LookPath("ip"); err != nil {
			t.Skip("needs the ip command (iproute2)")
		}
	}
	h := fnv.New32a()
	h.Write([]byte(t.Name()))
	pid, n := os.Getpid(), int(h.Sum32()%14)+1
	// A /28 per test: .0 network, .1 the root side, .2.. the pods.
	base := [4]byte{10, byte(200 + pid%50), byte(pid >> 8), byte(16 * n)}
	at := func(i int) netip.Addr { b := base; b[3] += byte(i); return netip.AddrFrom4(b) }
	ns := &testNetns{name: fmt.Sprintf("lbkit-k8s-%d-%d", pid, n), ip: ipCmd}
	hostIf, nsIf := fmt.Sprintf("k8%dh%d", pid%100000, n), fmt.Sprintf("k8%dn%d", pid%100000, n)
	ns.must(t, "netns", "add", ns.name)
	t.Cleanup(func() { _ = ns.run("netns", "del", ns.name) })
	ns.must(t, "link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", ns.name)
	t.Cleanup(func() { _ = ns.run("link", "del", hostIf) })
	ns.must(t, "addr", "add", at(1).String()+"/28", "dev", hostIf)
	ns.must(t, "link", "set", hostIf, "up")
	for i := range pods {
		a := at(2 + i)
		ns.must(t, "-n", ns.name, "addr", "add", a.String()+"/28", "dev", nsIf)
		ns.pods = append(ns.pods, a)
	}
	ns.must(t, "-n", ns.name, "link", "set", nsIf, "up")
	ns.must(t, "-n", ns.name, "link", "set", "lo", "up")
	h6 := netip.MustParseAddr(fmt.Sprintf("fd6c:626b:%x:%x::1", pid&0xffff, 0x800+n))
	n6 := netip.MustParseAddr(fmt.Sprintf("fd6c:626b:%x:%x::2", pid&0xffff, 0x800+n))
	if ns.run("addr", "add", h6.String()+"/64", "dev", hostIf, "nodad") == nil &&
		ns.run("-n", ns.name, "addr", "add", n6.String()+"/64", "dev", nsIf, "nodad") == nil {
		ns.pod6 = n6
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
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns.name, err)
			return
		}
		f()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	return <-errc
}
