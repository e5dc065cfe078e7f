package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// load runs clients against lbd's listeners until stopped, counting what
// succeeded and what failed (with the first errors kept).
type load struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ok     map[string]*atomic.Int64
	failed map[string]*atomic.Int64
	mu     sync.Mutex
	errs   []string
}

func newLoad(kinds ...string) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{ctx: ctx, cancel: cancel, ok: map[string]*atomic.Int64{}, failed: map[string]*atomic.Int64{}}
	for _, k := range kinds {
		l.ok[k], l.failed[k] = new(atomic.Int64), new(atomic.Int64)
	}
	return l
}

// run starts n workers of kind, each calling op in a loop until stopped.
func (l *load) run(kind string, n int, op func() error) {
	for range n {
		l.wg.Go(func() {
			for l.ctx.Err() == nil {
				if err := op(); err != nil {
					if l.ctx.Err() != nil {
						return // stopped during the call
					}
					l.failed[kind].Add(1)
					l.mu.Lock()
					if len(l.errs) < 20 {
						l.errs = append(l.errs, kind+": "+err.Error())
					}
					l.mu.Unlock()
					continue
				}
				l.ok[kind].Add(1)
			}
		})
	}
}

// waitOps waits until every kind has succeeded at least n more times than
// when it was called.
func (l *load) waitOps(t *testing.T, n int64) {
	t.Helper()
	base := map[string]int64{}
	for k, c := range l.ok {
		base[k] = c.Load()
	}
	require.Eventually(t, func() bool {
		for k, c := range l.ok {
			if c.Load() < base[k]+n {
				return false
			}
		}
		return true
	}, 60*time.Second, 10*time.Millisecond, "the load did not progress: %v", l.summary())
}

func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

func (l *load) summary() string {
	var b strings.Builder
	for k := range l.ok {
		fmt.Fprintf(&b, "%s: %d ok, %d failed; ", k, l.ok[k].Load(), l.failed[k].Load())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return b.String() + strings.Join(l.errs, "; ")
}

// TestUpgradeUnderLoad replaces a running lbd by a new binary while
// clients of every listener kind (HTTP on kept-alive and new connections,
// TCP, UDP) run, and checks that none of their requests failed and none
// was refused: the new process takes the listening sockets over, the old
// one drains and exits 0, the PID file names the new process, and the
// runtime changes made before carry over through the state file.
func TestUpgradeUnderLoad(t *testing.T) {
	if raceEnabled {
		// The race detector slows lbd several times over: on a small
		// machine its health checks then time out under this load and
		// the figures say nothing about the upgrade. scripts/test-all
		// runs this test again without it.
		t.Skip("run without -race (scripts/test-all does)")
	}
	bin := lbdBinary(t)
	dir := t.TempDir()
	// lbd runs from a copy, which the upgrade replaces by a new file (the
	// running one is then deleted), as a package manager does.
	exe := filepath.Join(dir, "lbd")
	copyFile(t, bin, exe)
	ts := newTargets(t)
	cfg := ts.config(t, dir)
	pidFile, state := filepath.Join(dir, "lbd.pid"), filepath.Join(dir, "state.json")
	p := startLBD(t, exe, nil, "run", "-config", cfg, "-admin", "127.0.0.1:0", "-pid-file", pidFile, "-state-file", state, "-shutdown-timeout", "20s")
	oldPID := p.cmd.Process.Pid
	assert.Equal(t, oldPID, readPID(t, pidFile))
	la := listenerAddrs(t, p.admin)
	waitServing(t, p.admin, "web", 2)
	waitServing(t, p.admin, "echo", 2)
	require.Equal(t, 200, adminCall(t, p.admin, "PATCH", "/groups/web/targets/web-1", map[string]any{"weight": 3}, nil))

	ld := newLoad("http keep-alive", "http new connection", "tcp", "udp")
	defer ld.stop()
	keep := &http.Client{Timeout: 10 * time.Second}
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	httpOp := func(c *http.Client) func() error {
		return func() error {
			req, _ := http.NewRequestWithContext(ld.ctx, "GET", "http://"+la["http"]+"/", nil)
			resp, err := c.Do(req)
			if err != nil {
				return err
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "web-") {
				return fmt.Errorf("%s: %q", resp.Status, b)
			}
			return nil
		}
	}
	ld.run("http keep-alive", 4, httpOp(keep))
	ld.run("http new connection", 2, httpOp(fresh))
	ld.run("tcp", 3, func() error {
		c, err := net.DialTimeout("tcp", la["tcp"], 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintln(c, "hello"); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasSuffix(line, ": hello\n") {
			return fmt.Errorf("echo %q", line)
		}
		return nil
	})
	ld.run("udp", 2, func() error {
		c, err := net.Dial("udp", la["udp"])
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		if string(buf[:n]) != "dns-1: ping" {
			return fmt.Errorf("answer %q", buf[:n])
		}
		return nil
	})
	ld.waitOps(t, 50)

	// The new binary is installed over the old one, and lbd upgraded.
	copyFile(t, bin, exe+".new")
	require.NoError(t, os.Rename(exe+".new", exe))
	var out, errOut strings.Builder
	code := upgradeCommand(context.Background(), []string{"-admin", strings.TrimPrefix(p.admin, "http://")}, &out, &errOut)
	require.Equal(t, 0, code, "lbd upgrade: %s%s", out.String(), errOut.String())
	newPID := readPID(t, pidFile)
	require.NotEqual(t, oldPID, newPID)
	p.others = append(p.others, newPID)
	assert.Contains(t, out.String(), fmt.Sprintf("lbd upgraded: process %d serves; process %d drains and exits", newPID, oldPID))

	// The old process drains and exits 0 while the load goes on.
	require.NoError(t, p.wait(t), "the old process exits 0 after the upgrade")
	ld.waitOps(t, 50)
	ld.stop()
	for k := range ld.ok {
		assert.Zero(t, ld.failed[k].Load(), "%s: no request failed across the upgrade: %s", k, ld.summary())
	}
	t.Logf("across the upgrade: %s", ld.summary())

	// The new process serves, with the runtime change made before.
	var rt struct {
		Changes []struct {
			Target string `json:"target"`
			Weight *int   `json:"weight"`
		} `json:"changes"`
	}
	require.Equal(t, 200, adminCall(t, p.admin, "GET", "/runtime", nil, &rt))
	require.Len(t, rt.Changes, 1)
	assert.Equal(t, 3, *rt.Changes[0].Weight)
	_, at := p.log.wait(t, 0, 10*time.Second, func(r map[string]any) bool {
		return r["msg"] == "lbd ready" && r["pid"] == float64(newPID)
	})
	p.log.wait(t, at, 10*time.Second, msg("stopped after the upgrade"))

	// And it stops as usual.
	require.NoError(t, syscall.Kill(newPID, syscall.SIGTERM))
	p.log.wait(t, at, 30*time.Second, func(r map[string]any) bool { return r["msg"] == "stopped" })
	_, err := os.Stat(pidFile)
	assert.ErrorIs(t, err, os.ErrNotExist, "a stopped lbd removes its PID file")
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, b, 0o755))
}
