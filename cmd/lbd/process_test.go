package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// builtLBD is lbd built once for the tests that run it as a process.
var builtLBD struct {
	once sync.Once
	bin  string
	err  error
	dir  string
}

// lbdBinary builds lbd once per test binary (with -race when the tests
// run with it) and returns its path.
func lbdBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	builtLBD.once.Do(func() {
		builtLBD.dir, builtLBD.err = os.MkdirTemp("", "lbd-test-")
		if builtLBD.err != nil {
			return
		}
		builtLBD.bin = filepath.Join(builtLBD.dir, "lbd")
		args := []string{"build", "-o", builtLBD.bin}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command(goTool(), append(args, ".")...).CombinedOutput()
		if err != nil {
			builtLBD.err = &buildError{out: string(out), err: err}
		}
	})
	require.NoError(t, builtLBD.err)
	return builtLBD.bin
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return "go build: " + e.err.Error() + ": " + e.out }

// proc is a running lbd whose JSON log the test reads.
type proc struct {
	cmd      *exec.Cmd
	log      *logs
	readDone chan struct{}
	admin    string // the admin endpoint's base URL
	exited   bool
	others   []int // processes that took over from it (killed at the end)
}

// startLBD runs the lbd binary with args (and -log-format json) and env
// added to the test's environment, and waits until it says it is ready.
// The process is killed at the end of the test if it still runs.
func startLBD(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, append(args, "-log-format", "json")...)
	cmd.Env = append(os.Environ(), env...)
	// A pipe of the test's own rather than StderrPipe: after a binary
	// upgrade the new process writes to it too, after the first has exited.
	r, w, err := os.Pipe()
	require.NoError(t, err)
	cmd.Stderr = w
	p := &proc{cmd: cmd, log: &logs{more: make(chan struct{}, 1)}, readDone: make(chan struct{})}
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		require.NoError(t, err)
	}
	go func() { defer close(p.readDone); defer r.Close(); p.log.read(r) }()
	t.Cleanup(func() {
		if !p.exited {
			cmd.Process.Kill()
			cmd.Wait()
		}
		for _, pid := range p.others {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-p.readDone:
		case <-time.After(30 * time.Second):
			t.Error("lbd's log pipe still open 30 s after its processes were killed")
		}
		if t.Failed() {
			t.Logf("lbd's log:\n%s", p.log)
		}
	})
	rec, _ := p.log.wait(t, 0, 60*time.Second, func(r map[string]any) bool {
		return r["msg"] == "admin endpoint listening" || r["msg"] == "lbd ready"
	})
	if a, ok := rec["admin"].(string); ok {
		p.admin = "http://" + a
	}
	p.log.wait(t, 0, 60*time.Second, msg("lbd ready"))
	return p
}

// wait waits for the process to exit and returns its error.
func (p *proc) wait(t *testing.T) error {
	t.Helper()
	err := p.cmd.Wait()
	p.exited = true
	return err
}

// adminCall sends a request to the admin endpoint with a JSON body (nil:
// none) and decodes the answer into out (nil: discarded).
func adminCall(t *testing.T, base, method, path string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if out != nil {
		require.NoError(t, json.Unmarshal(b, out), "%s %s: %s", method, path, b)
	}
	return resp.StatusCode
}

// listenerAddrs returns each listener's bound address, from /listeners.
func listenerAddrs(t *testing.T, base string) map[string]string {
	t.Helper()
	var ls []struct {
		Name    string `json:"name"`
		Address string `json:"address"`
	}
	require.Equal(t, http.StatusOK, adminCall(t, base, "GET", "/listeners", nil, &ls))
	out := map[string]string{}
	for _, l := range ls {
		out[l.Name] = l.Address
	}
	return out
}

// readPID reads a PID file.
func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	return pid
}

// goTool is the go command on the PATH (the one that runs the tests, as
// `go test` puts its own first on the PATH of the tests it runs).
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}
