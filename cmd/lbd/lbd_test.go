package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// targets are the test's own targets: two HTTP servers, two TCP echo
// servers and a UDP echo server, each answering with its name.
type targets struct {
	http map[string]string // name → address
	tcp  map[string]string
	udp  string
}

func newTargets(t *testing.T) *targets {
	t.Helper()
	ts := &targets{http: map[string]string{}, tcp: map[string]string{}}
	for _, name := range []string{"web-1", "web-2"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, name) }))
		t.Cleanup(srv.Close)
		ts.http[name] = srv.Listener.Addr().String()
	}
	for _, name := range []string{"echo-1", "echo-2"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		var wg sync.WaitGroup
		var mu sync.Mutex
		open := map[net.Conn]bool{}
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				open[c] = true
				mu.Unlock()
				wg.Go(func() {
					defer c.Close()
					s := bufio.NewScanner(c)
					for s.Scan() {
						fmt.Fprintf(c, "%s: %s\n", name, s.Text())
					}
				})
			}
		})
		t.Cleanup(func() {
			ln.Close()
			mu.Lock()
			for c := range open {
				c.Close()
			}
			mu.Unlock()
			wg.Wait()
		})
		ts.tcp[name] = ln.Addr().String()
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte("dns-1: "), buf[:n]...), from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	ts.udp = pc.LocalAddr().String()
	return ts
}

// config writes an lbd configuration for the targets and returns its path.
// The UDP group is checked over TCP on a port of the TCP echo 1, as a
// stand-in: what is tested is the UDP data path.
func (ts *targets) config(t *testing.T, dir string) string {
	t.Helper()
	y := fmt.Sprintf(`listeners:
  - {name: http, protocol: http, address: 127.0.0.1:0, forward_to: web, access_log: true}
  - {name: tcp, protocol: tcp, address: 127.0.0.1:0, forward_to: echo}
  - {name: udp, protocol: udp, address: 127.0.0.1:0, forward_to: dns}
target_groups:
  - name: web
    protocol: http
    targets:
      - {id: web-1, address: %q}
      - {id: web-2, address: %q}
    health_check: {interval: 200ms, timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 5}
    deregistration_delay: 1s
  - name: echo
    protocol: tcp
    targets:
      - {id: echo-1, address: %q}
      - {id: echo-2, address: %q}
    health_check: {interval: 200ms, timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 5}
  - name: dns
    protocol: udp
    targets:
      - {id: dns-1, address: %q}
    health_check: {enabled: false}
`, ts.http["web-1"], ts.http["web-2"], ts.tcp["echo-1"], ts.tcp["echo-2"], ts.udp)
	path := filepath.Join(dir, "lbd.yaml")
	require.NoError(t, os.WriteFile(path, []byte(y), 0o600))
	return path
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := newTargets(t).config(t, dir)
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte(`listeners:
  - name: web
    protocol: http
    address: 127.0.0.1:70000
    forward_to: app
  - name: api
    protocol: htp
    address: 127.0.0.1:0
target_groups:
  - name: app
    protocol: http
    targets:
      - {id: a, address: 127.0.0.1:9001, weight: 150}
    health_check:
	  interval: 5s
`), 0o600))
	syntax := filepath.Join(dir, "syntax.yaml")
	require.NoError(t, os.WriteFile(syntax, []byte("listeners:\n  - name: web\n    protocol: http\n\taddress: 127.0.0.1:80\n"), 0o600))
	semantic := filepath.Join(dir, "semantic.yaml")
	b, _ := os.ReadFile(bad)
	require.NoError(t, os.WriteFile(semantic, []byte(strings.Replace(string(b), "\t  interval", "      interval", 1)), 0o600))
	for _, tc := range []struct {
		args     []string
		code     int
		out, err []string
	}{
		{args: []string{"validate", "-config", good}, code: 0, out: []string{good + ": the configuration is valid"}},
		{args: []string{"validate", "-config", semantic}, code: 1, err: []string{
			semantic + ": the configuration is invalid:\n" +
				`  listeners[web].address: "127.0.0.1:70000": port 70000 is out of range 0..65535 (line 4)` + "\n" +
				`  listeners[api].protocol: "htp" is not one of tcp, udp, tls, http, https (line 7)` + "\n" +
				`  target_groups[app].targets[a].weight: 150 is out of range 0..100 (line 13)` + "\n",
		}},
		{args: []string{"validate", "-config", bad}, code: 1, err: []string{
			bad + ": the configuration is invalid:\n  a tab character in the indentation; YAML indents with spaces only (line 15)\n",
		}},
		{args: []string{"validate", "-config", syntax}, code: 1, err: []string{"(line 4)"}},
		{args: []string{"validate", "-config", filepath.Join(dir, "missing.yaml")}, code: 1, err: []string{"no such file or directory"}},
		{args: []string{"validate"}, code: 2, err: []string{"-config is required"}},
		{args: []string{"validate", "-config", good, "extra"}, code: 2, err: []string{"nothing else is taken"}},
		{args: []string{"nonsense"}, code: 2, err: []string{`unknown command "nonsense"`, "lbd validate -config FILE"}},
		{args: nil, code: 2, err: []string{"Usage:"}},
		{args: []string{"help"}, code: 0, out: []string{"lbd run -config FILE"}},
	} {
		var out, errOut strings.Builder
		assert.Equal(t, tc.code, lbd(context.Background(), tc.args, &out, &errOut), "lbd %v: %s%s", tc.args, out.String(), errOut.String())
		for _, w := range tc.out {
			assert.Contains(t, out.String(), w, "lbd %v", tc.args)
		}
		for _, w := range tc.err {
			assert.Contains(t, errOut.String(), w, "lbd %v", tc.args)
		}
	}
}

// TestValidateStartsNothing checks that validate opens no socket: a file
// whose listener's port is taken is still valid (binding is run's job), and
// the port stays the other program's.
func TestValidateStartsNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "lbd.yaml")
	require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf(`listeners:
  - {name: tcp, protocol: tcp, address: %q, forward_to: echo}
target_groups:
  - {name: echo, protocol: tcp, targets: [{address: 127.0.0.1:9}]}
`, ln.Addr().String())), 0o600))
	var out, errOut strings.Builder
	assert.Equal(t, 0, lbd(context.Background(), []string{"validate", "-config", path}, &out, &errOut), errOut.String())
}

func TestVersion(t *testing.T) {
	var out, errOut strings.Builder
	require.Equal(t, 0, lbd(context.Background(), []string{"version"}, &out, &errOut))
	assert.Regexp(t, `^lbd \S+\n`, out.String())
	assert.Regexp(t, `built with go1\.\d+\S* for \w+/\w+\n$`, out.String())
	assert.Equal(t, 2, lbd(context.Background(), []string{"version", "x"}, &out, &errOut))
}

// TestGoInstall installs lbd from the checkout into a temporary GOBIN, as a
// user does with go install, and runs it; and checks that the module has
// no replace directive, which go install …@latest refuses.
func TestGoInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds lbd")
	}
	b, err := os.ReadFile("go.mod")
	require.NoError(t, err)
	assert.NotRegexp(t, `(?m)^\s*replace\b`, string(b), "go install github.com/lbkit/lbkit/cmd/lbd@latest refuses a module with replace directives")
	assert.Regexp(t, `(?m)^module github.com/lbkit/lbkit/cmd/lbd$`, string(b))

	gobin := t.TempDir()
	cmd := exec.Command(goTool(), "install", ".")
	cmd.Env = append(os.Environ(), "GOBIN="+gobin)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go install: %s", out)
	out, err = exec.Command(filepath.Join(gobin, "lbd"), "version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Regexp(t, `^lbd `, string(out))
	out, _ = exec.Command(filepath.Join(gobin, "lbd"), "help").CombinedOutput()
	assert.Contains(t, string(out), "lbd validate -config FILE")
}

// TestSystemdNotify runs lbd with a NOTIFY_SOCKET, as systemd does for a
// Type=notify service, and reads what it says: READY=1 with its PID once
// it serves, RELOADING=1 then READY=1 around a reload, STOPPING=1 when it
// stops.
func TestSystemdNotify(t *testing.T) {
	bin := lbdBinary(t)
	dir := t.TempDir()
	cfg := newTargets(t).config(t, dir)
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	require.NoError(t, err)
	defer conn.Close()
	msgs := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	next := func() string {
		t.Helper()
		select {
		case m := <-msgs:
			return m
		case <-time.After(30 * time.Second):
			t.Fatal("no notification within 30 s")
		}
		return ""
	}
	p := startLBD(t, bin, []string{"NOTIFY_SOCKET=" + sock}, "run", "-config", cfg, "-admin", "127.0.0.1:0")
	pid := p.cmd.Process.Pid
	assert.Regexp(t, fmt.Sprintf(`^READY=1\nMAINPID=%d\nSTATUS=serving 3 listeners, 3 target groups$`, pid), next())

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	assert.Regexp(t, `^RELOADING=1\nMONOTONIC_USEC=\d+$`, next())
	assert.Equal(t, "READY=1", next())

	// A bad file: the reload is refused, and lbd is ready again all the same.
	require.NoError(t, os.WriteFile(cfg, []byte("listeners: [{name: x, protocol: nope}]\n"), 0o600))
	require.Equal(t, 422, adminCall(t, p.admin, "POST", "/reload", nil, nil))
	assert.Regexp(t, `^RELOADING=1\n`, next())
	assert.Equal(t, "READY=1", next())

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, "STOPPING=1", next())
	require.NoError(t, p.wait(t))
}

// TestRuntimeChangesKeptAcrossReloadAndRestart drives the runtime API of a
// running lbd: a drain and a weight, kept across a reload, saved to the
// state file and made again by the next lbd.
func TestRuntimeChangesKeptAcrossReloadAndRestart(t *testing.T) {
	bin := lbdBinary(t)
	dir := t.TempDir()
	ts := newTargets(t)
	cfg := ts.config(t, dir)
	state := filepath.Join(dir, "state.json")
	args := []string{"run", "-config", cfg, "-admin", "127.0.0.1:0", "-state-file", state}
	p := startLBD(t, bin, nil, args...)
	web := listenerAddrs(t, p.admin)["http"]
	waitServing(t, p.admin, "web", 2)

	var v map[string]any
	require.Equal(t, 200, adminCall(t, p.admin, "PATCH", "/groups/web/targets/web-2", map[string]any{"drained": true}, &v))
	require.Equal(t, 200, adminCall(t, p.admin, "PATCH", "/groups/web/targets/web-1", map[string]any{"weight": 5}, &v))
	assert.Equal(t, map[string]int{"web-1": 6}, get(t, web, 6), "web-2 is drained")

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	p.log.wait(t, 0, 10*time.Second, msg("configuration reloaded"))
	assert.Equal(t, map[string]int{"web-1": 6}, get(t, web, 6), "still drained after the reload")
	var rt struct {
		Changes []struct {
			Target  string `json:"target"`
			Drained bool   `json:"drained"`
			Weight  *int   `json:"weight"`
		} `json:"changes"`
		OnReload string `json:"on_reload"`
	}
	require.Equal(t, 200, adminCall(t, p.admin, "GET", "/runtime", nil, &rt))
	require.Len(t, rt.Changes, 2)
	assert.Contains(t, rt.OnReload, "kept")
	page := getPage(t, p.admin+"/")
	assert.Contains(t, page, "Runtime changes (2)")
	assert.Contains(t, page, "web/web-2: drained")

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, p.wait(t))

	// The next lbd restores them from the state file.
	p = startLBD(t, bin, nil, args...)
	web = listenerAddrs(t, p.admin)["http"]
	p.log.wait(t, 0, 10*time.Second, msg("runtime changes restored"))
	waitServing(t, p.admin, "web", 1)
	assert.Equal(t, map[string]int{"web-1": 6}, get(t, web, 6), "drained after the restart")
	require.Equal(t, 200, adminCall(t, p.admin, "DELETE", "/runtime", nil, nil))
	waitServing(t, p.admin, "web", 2)
	assert.Equal(t, map[string]int{"web-1": 3, "web-2": 3}, get(t, web, 6), "DELETE /runtime went back to the file")
	b, err := os.ReadFile(state)
	require.NoError(t, err)
	assert.JSONEq(t, `{"version":1,"changes":[]}`, string(b))
}

// waitServing waits until a group has n serving targets.
func waitServing(t *testing.T, admin, group string, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		var g struct {
			Stats struct {
				Targets []struct {
					Serving bool `json:"serving"`
				} `json:"targets"`
			} `json:"stats"`
		}
		if adminCall(t, admin, "GET", "/groups/"+group, nil, &g) != 200 {
			return false
		}
		k := 0
		for _, tg := range g.Stats.Targets {
			if tg.Serving {
				k++
			}
		}
		return k == n
	}, 30*time.Second, 20*time.Millisecond)
}

// get makes n requests through addr on new connections and counts the
// answering targets.
func get(t *testing.T, addr string, n int) map[string]int {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	got := map[string]int{}
	for range n {
		resp, err := c.Get("http://" + addr + "/")
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode, "%s", b)
		got[strings.TrimSpace(string(b))]++
	}
	return got
}

func getPage(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}
