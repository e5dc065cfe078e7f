package main

import (
	"context"
	"regexp"
	"testing"

	"github.com/lbkit/lbkit/internal/syncbuf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestClientIP runs the demonstration and checks what the guide says it
// shows.
func TestClientIP(t *testing.T) {
	var out syncbuf.Buffer
	require.NoError(t, run(context.Background(), &out, false))
	s := out.String()

	assert.Contains(t, s, `direct client                                → target sees peer=127.0.0.1 X-Forwarded-For="127.0.0.1" X-Forwarded-Proto="http"`)
	assert.Contains(t, s, `client claiming X-Forwarded-For: 203.0.113.9 → target sees peer=127.0.0.1 X-Forwarded-For="127.0.0.1"`, "an untrusted client's header is replaced")
	assert.Contains(t, s, `via a trusted proxy that says 203.0.113.9    → target sees peer=127.0.0.1 X-Forwarded-For="203.0.113.9, 127.0.0.1"`, "a trusted proxy's header is appended to")

	// The PROXY header carries the client's own address and port.
	for _, v := range []string{"1", "2"} {
		m := regexp.MustCompile(`tcp-v` + v + `:  client (\S+) +→ target sees peer=127.0.0.1 PROXY v` + v + ` client=(\S+)\n`).FindStringSubmatch(s)
		require.NotNil(t, m, "v%s in:\n%s", v, s)
		assert.Equal(t, m[1], m[2], "the target learns the client's address and port")
	}
	assert.Contains(t, s, "tcp-behind-lb: 127.0.0.1 sends a PROXY header for 198.51.100.7 → target sees peer=127.0.0.1 PROXY v2 client=198.51.100.7:40000")
	assert.Contains(t, s, "tcp-strict:    127.0.0.1 sends a PROXY header for 198.51.100.7 → target sees nothing: connection reset by peer")
	assert.Contains(t, s, "tcp-strict: TCPStats.ProxyHeaderUntrusted = 1")
}
