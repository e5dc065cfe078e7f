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

// TestFullProxy runs the demonstration and checks what the guide says it
// shows: the target's connection is lbkit's own (another address family,
// another port), the target learns the client from the PROXY header or
// X-Forwarded-For, and UDP targets see a socket of lbkit.
func TestFullProxy(t *testing.T) {
	var out syncbuf.Buffer
	require.NoError(t, run(context.Background(), &out, false))
	s := out.String()

	client := regexp.MustCompile(`client's connection:  \[::1\]:(\d+) → \[::1\]:(\d+) \(client to lbkit\)`).FindStringSubmatch(s)
	require.NotNil(t, client, s)
	target := regexp.MustCompile(`target's connection:  127\.0\.0\.1:(\d+) → 127\.0\.0\.1:\d+ \(lbkit to target\)`).FindStringSubmatch(s)
	require.NotNil(t, target, s)
	assert.Contains(t, s, "the target answers 127.0.0.1:"+target[1]+", a socket of lbkit")
	assert.Contains(t, s, "the PROXY header tells the target the client: PROXY TCP6 ::1 ::1 "+client[1]+" "+client[2]+"\n")

	assert.Regexp(t, `the target sees: peer 127\.0\.0\.1:\d+, X-Forwarded-For ::1\n`, s)

	udp := regexp.MustCompile(`client's datagrams:   \[::1\]:\d+ → \[::1\]:\d+\n  the target sees them from 127\.0\.0\.1:\d+, and answers there`).FindString(s)
	assert.NotEmpty(t, udp, s)
}
