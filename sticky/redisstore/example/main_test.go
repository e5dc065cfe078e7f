package main

import (
	"bytes"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startRedis starts a redis-server on a free loopback port, or skips.
func startRedis(t *testing.T) (string, func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed (apt-get install redis-server; .ci/run installs it)")
	}
	for attempt := 0; attempt < 5; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning")
		require.NoError(t, cmd.Start())
		done := make(chan struct{})
		go func() { defer close(done); _ = cmd.Wait() }()
		stop := func() {
			_ = cmd.Process.Kill()
			<-done
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			select {
			case <-done:
				deadline = time.Time{} // exited: the port was taken; try another
				continue
			default:
			}
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Cleanup(stop)
				return addr, stop
			}
			time.Sleep(10 * time.Millisecond) // polling a starting process
		}
		stop()
	}
	t.Fatal("redis-server did not start")
	return "", nil
}

func TestRun(t *testing.T) {
	addr, stop := startRedis(t)
	var out bytes.Buffer
	require.NoError(t, run(&out, addr, stop))
	t.Log("\n" + out.String())
	// Each client meets one target on both nodes, before and after Redis goes.
	same := regexp.MustCompile(`(?m)^client 127\.0\.0\.1[12]: node 0 → (\w), node 1 → (\w), node 0 → (\w), node 1 → (\w)$`)
	ms := same.FindAllStringSubmatch(out.String(), -1)
	require.Len(t, ms, 2)
	for _, m := range ms {
		assert.Equal(t, []string{m[1], m[1], m[1], m[1]}, m[1:], "one target whichever node")
	}
	assert.Regexp(t, `Redis gone, client 127\.0\.0\.11: node 0 → `+ms[0][1]+`, node 1 → `+ms[0][1]+`\n`, out.String())
	assert.Contains(t, out.String(), "store errors counted: true")
}
