package handoff

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Environment variables of a process started by Upgrade.
const (
	// EnvSockets lists the inherited sockets, "v1" then one
	// "name network address fd" entry per socket (the name query-escaped),
	// separated by ";".
	EnvSockets = "LBD_HANDOFF"
	// EnvReady is the descriptor to write "ready\n" to.
	EnvReady = "LBD_HANDOFF_READY"
	// EnvParent is the descriptor that reaches its end when the old
	// process has exited.
	EnvParent = "LBD_HANDOFF_PARENT"
)

// ErrParentAlive is returned by Upgrade while the process this one took
// over from is still draining: one upgrade at a time.
var ErrParentAlive = errors.New("handoff: the previous process is still draining; upgrade again once it has exited")

// exitWait is how long Upgrade waits for a new process that closed its
// ready pipe without a word to exit, before it kills it.
const exitWait = 5 * time.Second

// ErrUpgrading is returned by Upgrade while another upgrade runs.
var ErrUpgrading = errors.New("handoff: an upgrade is already under way")

// Sockets opens listening sockets, taking the inherited ones where the
// network and address match what the previous process was asked for, and
// keeps track of every socket it opened so that Upgrade can pass them on.
// It implements lb.Sockets. The zero value is not usable; call New.
type Sockets struct {
	mu        sync.Mutex
	inherited map[key][]*os.File // not taken yet, by what was asked for
	open      []socket           // opened or taken; closed ones pruned
	ready     *os.File           // write "ready" here; nil without a parent
	parent    *os.File           // EOF once the parent exited; nil without one
	parentEnd chan struct{}      // closed when the parent has exited
	upgrading bool
	keepAlive []*os.File // the pipes whose end tells children we exited
}

// key is what a socket was asked for as.
type key struct{ name, network, addr string }

// socket is one open socket and what it was opened as.
type socket struct {
	key  key
	conn syscall.Conn // *net.TCPListener or *net.UDPConn
}

// New returns the Sockets of this process: with the sockets of the process
// that started it by Upgrade, if any (read from the environment, which is
// then cleared of them), or none.
func New() (*Sockets, error) {
	s := &Sockets{inherited: map[key][]*os.File{}, parentEnd: make(chan struct{})}
	spec, ok := os.LookupEnv(EnvSockets)
	if !ok {
		close(s.parentEnd)
		return s, nil
	}
	defer func() {
		os.Unsetenv(EnvSockets)
		os.Unsetenv(EnvReady)
		os.Unsetenv(EnvParent)
	}()
	entries := strings.Split(spec, ";")
	if entries[0] != "v1" {
		return nil, fmt.Errorf("handoff: %s=%q: unknown version", EnvSockets, spec)
	}
	for _, e := range entries[1:] {
		f := strings.Fields(e)
		if len(f) != 4 {
			return nil, fmt.Errorf("handoff: %s: bad entry %q", EnvSockets, e)
		}
		name, err := url.QueryUnescape(f[0])
		if err != nil {
			return nil, fmt.Errorf("handoff: %s: bad name in %q", EnvSockets, e)
		}
		fd, err := strconv.Atoi(f[3])
		if err != nil || fd < 3 {
			return nil, fmt.Errorf("handoff: %s: bad descriptor in %q", EnvSockets, e)
		}
		syscall.CloseOnExec(fd) // not to be inherited by anything else
		k := key{name, f[1], f[2]}
		s.inherited[k] = append(s.inherited[k], os.NewFile(uintptr(fd), f[1]+":"+f[2]))
	}
	var err error
	if s.ready, err = fdFromEnv(EnvReady, "ready"); err != nil {
		return nil, err
	}
	if s.parent, err = fdFromEnv(EnvParent, "parent"); err != nil {
		return nil, err
	}
	go func() {
		_, _ = io.Copy(io.Discard, s.parent) // ends when the parent exits
		s.parent.Close()
		close(s.parentEnd)
	}()
	return s, nil
}

func fdFromEnv(name, what string) (*os.File, error) {
	v := os.Getenv(name)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("handoff: %s=%q: not a descriptor", name, v)
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), what), nil
}

// HasParent reports whether this process was started by Upgrade.
func (s *Sockets) HasParent() bool { return s.ready != nil }

// ParentExited is closed once the process this one took over from has
// exited (at once when there is none).
func (s *Sockets) ParentExited() <-chan struct{} { return s.parentEnd }

// Listen returns the inherited TCP listener opened for name, network and
// addr, or a new one. An inherited socket of another name matches too when
// addr names a port (not port 0): a renamed listener keeps its socket.
func (s *Sockets) Listen(name, network, addr string) (net.Listener, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{name, network, addr}
	if f, ok := s.takeLocked(k); ok {
		ln, err := net.FileListener(f)
		f.Close() // FileListener made its own duplicate
		if err != nil {
			return nil, fmt.Errorf("handoff: inherited %s %s: %w", network, addr, err)
		}
		s.trackLocked(k, ln)
		return ln, nil
	}
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), network, addr)
	if err != nil {
		return nil, err
	}
	s.trackLocked(k, ln)
	return ln, nil
}

// ListenPacket returns the inherited UDP socket opened for name, network
// and addr, or a new one, matched as Listen matches.
func (s *Sockets) ListenPacket(name, network, addr string) (net.PacketConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{name, network, addr}
	if f, ok := s.takeLocked(k); ok {
		pc, err := net.FilePacketConn(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("handoff: inherited %s %s: %w", network, addr, err)
		}
		s.trackLocked(k, pc)
		return pc, nil
	}
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		return nil, err
	}
	s.trackLocked(k, pc)
	return pc, nil
}

// takeLocked returns the first inherited socket of k not taken yet, or,
// when k's address names a port, of another name with that address.
func (s *Sockets) takeLocked(k key) (*os.File, bool) {
	fs := s.inherited[k]
	if len(fs) == 0 {
		if _, port, err := net.SplitHostPort(k.addr); err != nil || port == "0" {
			return nil, false
		}
		for other := range s.inherited {
			if other.network == k.network && other.addr == k.addr {
				k, fs = other, s.inherited[other]
				break
			}
		}
		if len(fs) == 0 {
			return nil, false
		}
	}
	f := fs[0]
	if len(fs) == 1 {
		delete(s.inherited, k)
	} else {
		s.inherited[k] = fs[1:]
	}
	return f, true
}

// trackLocked records an open socket, and forgets the ones closed since.
func (s *Sockets) trackLocked(k key, c any) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return // cannot be passed on; not a socket of the net package
	}
	live := s.open[:0]
	for _, o := range s.open {
		if isOpen(o.conn) {
			live = append(live, o)
		}
	}
	clear(s.open[len(live):])
	s.open = append(live, socket{key: k, conn: sc})
}

// isOpen reports whether c's descriptor is still open.
func isOpen(c syscall.Conn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	return rc.Control(func(uintptr) {}) == nil
}

// Ready tells the process this one took over from that it serves: that
// process then stops accepting and drains. Inherited sockets that nothing
// asked for (a listener the new configuration dropped) are closed first.
// Without a parent it does nothing.
func (s *Sockets) Ready() error {
	s.mu.Lock()
	for k, fs := range s.inherited {
		for _, f := range fs {
			f.Close()
		}
		delete(s.inherited, k)
	}
	ready := s.ready
	s.ready = nil
	s.mu.Unlock()
	if ready == nil {
		return nil
	}
	defer ready.Close()
	if _, err := io.WriteString(ready, "ready\n"); err != nil {
		return fmt.Errorf("handoff: telling the previous process: %w", err)
	}
	return nil
}

// Upgrade starts the program's executable again, with this process's
// arguments and environment and the sockets open now, and waits until it
// is ready (it called Ready) or fails: it exited, ctx ended, or it did not
// get ready within timeout (then it is killed). On success it returns the
// new process's ID; the caller then stops accepting, drains and exits.
// While this process's own parent is still draining it returns
// ErrParentAlive.
func (s *Sockets) Upgrade(ctx context.Context, timeout time.Duration) (int, error) {
	select {
	case <-s.parentEnd:
	default:
		return 0, ErrParentAlive
	}
	s.mu.Lock()
	if s.upgrading {
		s.mu.Unlock()
		return 0, ErrUpgrading
	}
	s.upgrading = true
	files, spec, err := s.filesLocked()
	s.mu.Unlock()
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	done := func(pid int, err error) (int, error) {
		s.mu.Lock()
		s.upgrading = false
		s.mu.Unlock()
		return pid, err
	}
	if err != nil {
		return done(0, err)
	}
	exe, err := os.Executable()
	if err != nil {
		return done(0, fmt.Errorf("handoff: the program's executable: %w", err))
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return done(0, fmt.Errorf("handoff: %w", err))
	}
	defer readyR.Close()
	parentR, parentW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return done(0, fmt.Errorf("handoff: %w", err))
	}
	n := len(files)
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = append(append([]*os.File{}, files...), readyW, parentR)
	cmd.Env = append(withoutHandoff(os.Environ()),
		EnvSockets+"="+spec,
		EnvReady+"="+strconv.Itoa(3+n),
		EnvParent+"="+strconv.Itoa(4+n),
	)
	err = cmd.Start()
	readyW.Close()
	parentR.Close()
	if err != nil {
		parentW.Close()
		return done(0, fmt.Errorf("handoff: starting %s: %w", exe, err))
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(readyR).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("said %q", line)
		}
		ready <- err
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	fail := func(err error) (int, error) {
		_ = cmd.Process.Kill()
		parentW.Close()
		return done(0, err)
	}
	pid := cmd.Process.Pid
	select {
	case err := <-ready:
		if err != nil {
			// Its end of the pipe closed without a word: it is exiting.
			select {
			case werr := <-exited:
				return fail(fmt.Errorf("handoff: the new process (pid %d) exited before it was ready: %v", pid, werr))
			case <-time.After(exitWait):
			}
			return fail(fmt.Errorf("handoff: the new process (pid %d) did not say it was ready: %v", pid, err))
		}
	case err := <-exited:
		return fail(fmt.Errorf("handoff: the new process (pid %d) exited before it was ready: %v", pid, err))
	case <-timer.C:
		return fail(fmt.Errorf("handoff: the new process (pid %d) was not ready within %s; killed", pid, timeout))
	case <-ctx.Done():
		return fail(fmt.Errorf("handoff: %w; the new process (pid %d) killed", ctx.Err(), pid))
	}
	// parentW stays open until this process exits: its end tells the new
	// process that it may upgrade in turn.
	s.mu.Lock()
	s.keepAlive = append(s.keepAlive, parentW)
	s.mu.Unlock()
	return pid, nil
}

// filesLocked returns a duplicate of every open socket and the
// environment entry that names them.
func (s *Sockets) filesLocked() ([]*os.File, string, error) {
	var files []*os.File
	entries := []string{"v1"}
	live := s.open[:0]
	for _, o := range s.open {
		f, err := dup(o.conn)
		if errors.Is(err, net.ErrClosed) {
			continue // closed since: not passed on
		}
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, "", fmt.Errorf("handoff: %s %s: %w", o.key.network, o.key.addr, err)
		}
		live = append(live, o)
		entries = append(entries, fmt.Sprintf("%s %s %s %d", url.QueryEscape(o.key.name), o.key.network, o.key.addr, 3+len(files)))
		files = append(files, f)
	}
	clear(s.open[len(live):])
	s.open = live
	return files, strings.Join(entries, ";"), nil
}

// dup returns a duplicate of a socket's descriptor, or net.ErrClosed.
func dup(c syscall.Conn) (*os.File, error) {
	if !isOpen(c) {
		return nil, net.ErrClosed
	}
	type filer interface{ File() (*os.File, error) }
	fc, ok := c.(filer)
	if !ok {
		return nil, fmt.Errorf("%T cannot be passed on", c)
	}
	f, err := fc.File()
	if err != nil && !isOpen(c) {
		return nil, net.ErrClosed
	}
	return f, err
}

// withoutHandoff returns env without this package's variables.
func withoutHandoff(env []string) []string {
	out := env[:0:0]
	for _, e := range env {
		name, _, _ := strings.Cut(e, "=")
		if name != EnvSockets && name != EnvReady && name != EnvParent {
			out = append(out, e)
		}
	}
	return out
}
