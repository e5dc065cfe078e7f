package main

import (
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/lbkit/lbkit/internal/syncbuf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestIdleTimeouts runs the demonstration and checks what the guide says it
// shows: the quiet TCP connection is reset on both sides, not before its
// idle timeout; the one with keepalive probes survives twice the timeout;
// the idle HTTP keep-alive connection ends with a clean close.
func TestIdleTimeouts(t *testing.T) {
	var out syncbuf.Buffer
	require.NoError(t, run(context.Background(), &out, false))
	s := out.String()

	m := regexp.MustCompile(`quiet connection:   after (\d+)s\+ idle: connection reset by peer \(reset: true\)`).FindStringSubmatch(s)
	require.NotNil(t, m, s)
	secs, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	assert.GreaterOrEqual(t, secs, int(tcpIdle/time.Second), "never reset before the idle timeout")
	assert.Contains(t, s, "the target's side:  connection reset by peer", "the reset goes both ways")
	assert.Contains(t, s, `answer "echo: still there?", error <nil>`, "keepalive probes keep a connection")
	assert.Contains(t, s, "TCPStats.IdleResets: 1")
	assert.Regexp(t, `keep-alive connection after one request: 200 OK, then after \d+s\+ idle: EOF\n`, s, "HTTP closes an idle keep-alive connection cleanly")
}
