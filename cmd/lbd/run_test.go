package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lbkit/lbkit/internal/syncbuf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCommandLine checks that a bad command line or configuration stops
// lbd at once with the exit code and a message that says why.
func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("listeners:\n  - name: web\n    protocol: http\n    address: 127.0.0.1:70000\n    forward_to: app\n"), 0o600))
	for _, tc := range []struct {
		args []string
		code int
		want []string
	}{
		{nil, 2, []string{"-config is required", "-log-format"}},
		{[]string{"-config", "lbd.yaml", "extra"}, 2, []string{"-config is required, and nothing else is taken"}},
		{[]string{"-config", "lbd.yaml", "-log-format", "xml"}, 2, []string{`-log-format "xml" is not text or json`}},
		{[]string{"-config", "lbd.yaml", "-log-level", "loud"}, 2, []string{`-log-level "loud" is not debug`}},
		{[]string{"-config", filepath.Join(dir, "missing.yaml")}, 1, []string{"the configuration is invalid", "no such file or directory"}},
		{[]string{"-config", bad, "-log-format", "json"}, 1, []string{
			`"problems":["listeners[web].address: \"127.0.0.1:70000\": port 70000 is out of range 0..65535 (line 4)","listeners[web].forward_to: forwards to target group \"app\", which does not exist (line 5)"]`,
		}},
	} {
		var out syncbuf.Buffer
		assert.Equal(t, tc.code, run(context.Background(), tc.args, &out), "lbd %v", tc.args)
		for _, w := range tc.want {
			assert.Contains(t, out.String(), w, "lbd %v", tc.args)
		}
	}
}

// TestSampleWithDemoTargets runs lbd in the test with the sample
// configuration and its demo targets, on free ports, and stops it by its
// context. The test starts the demo targets itself, as -demo-targets does,
// on port 0: each binds a free port for each of its protocols and the file
// lbd reads names the ports they got, so no other process can take one in
// between (reserving a port and releasing it for lbd raced with them).
func TestSampleWithDemoTargets(t *testing.T) {
	f := sample(t)
	fast(f)
	for gi := range f.TargetGroups {
		for ti := range f.TargetGroups[gi].Targets {
			f.TargetGroups[gi].Targets[ti].Address = "127.0.0.1:0"
		}
	}
	stop, err := startDemoTargets(f, slog.New(slog.DiscardHandler), netSockets{})
	require.NoError(t, err)
	defer stop()
	path := filepath.Join(t.TempDir(), "lbd.yaml")
	write(t, path, f)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncbuf.Buffer
	code := make(chan int, 1)
	go func() { code <- run(ctx, []string{"-config", path, "-admin", "127.0.0.1:0"}, &out) }()
	var web string
	ready := regexp.MustCompile(`msg="lbd ready".* listeners="http=http://([0-9.:]+) `)
	deadline := time.Now().Add(30 * time.Second)
	for web == "" {
		if m := ready.FindStringSubmatch(out.String()); m != nil {
			web = m[1]
			break
		}
		select {
		case c := <-code: // lbd gave up: say why at once
			t.Fatalf("lbd exited with code %d before it was ready:\n%s", c, &out)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("lbd not ready after 30 s:\n%s", &out)
		}
	}
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	var got string
	require.Eventually(t, func() bool { // until the demo targets pass their first checks
		resp, err := client.Get("http://" + web + "/")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got = strings.TrimSpace(string(b))
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 20*time.Millisecond)
	assert.Regexp(t, `^web-[123]$`, got, "a demo target answers with its id")
	resp, err := client.Get("http://" + web + "/lb-health")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "ok\n", string(b), "the sample's fixed-response rule")
	client.CloseIdleConnections()
	cancel()
	assert.Equal(t, 0, <-code)
	assert.Contains(t, out.String(), `msg=stopped`)
}

// TestDemoTargetsFlag: -demo-targets starts the file's targets before the
// load balancer; one that cannot bind (its port taken) stops lbd at once,
// saying which.
func TestDemoTargetsFlag(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	f := sample(t)
	fast(f)
	for gi := range f.TargetGroups {
		for ti := range f.TargetGroups[gi].Targets {
			f.TargetGroups[gi].Targets[ti].Address = taken.Addr().String()
		}
	}
	path := filepath.Join(t.TempDir(), "lbd.yaml")
	write(t, path, f)
	var out syncbuf.Buffer
	assert.Equal(t, 1, run(context.Background(), []string{"-config", path, "-demo-targets", "-admin", ""}, &out))
	assert.Contains(t, out.String(), "demo target "+f.TargetGroups[0].Targets[0].ID+" of group "+f.TargetGroups[0].Name)
	assert.Contains(t, out.String(), "address already in use")
}

// netSockets opens sockets with the net package, for demo targets the
// tests start themselves.
type netSockets struct{}

func (netSockets) Listen(_, network, addr string) (net.Listener, error) {
	return net.Listen(network, addr)
}

func (netSockets) ListenPacket(_, network, addr string) (net.PacketConn, error) {
	return net.ListenPacket(network, addr)
}
