package main

import (
	"context"
	"testing"

	"github.com/lbkit/lbkit/internal/syncbuf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestZeroDowntime runs the demonstration and checks what the guide says it
// shows: no established connection breaks before the deregistration delay,
// each step applies to the next new connection, and the one connection
// still open when the delay ends is reset then.
func TestZeroDowntime(t *testing.T) {
	var out syncbuf.Buffer
	require.NoError(t, run(context.Background(), &out, false))
	s := out.String()
	assert.Contains(t, s, "version 1 serving; new connections: ")
	assert.Regexp(t, `1\. AddTarget v2-a; once healthy, new connections: (v\d-. ){5}v\d-.\n`, s)
	assert.Regexp(t, `1\. .*v2-a.*v2-a`, s, "the new target takes its share")
	assert.Contains(t, s, "2. SetWeight v1-a and v1-b to 0; new connections: v2-a v2-a v2-a v2-a; long-lived ones still answer: v1-a v1-b")
	assert.Contains(t, s, "Diagnose on v1-a: weight 0: no new traffic; established connections continue\n")
	assert.Contains(t, s, "3. RemoveTarget v1-a and v1-b (delay 2s); long-lived ones still answer: v1-a v1-b")
	assert.Regexp(t, `deregistered, draining until \d\d:\d\d:\d\d`, s)
	assert.Regexp(t, `the connection on v1-a ended [2-9]s\+ after RemoveTarget: connection reset by peer`, s, "reset when the delay ends, not before")
	assert.Contains(t, s, "4. after the delay the group holds: v2-a; new connections: v2-a v2-a v2-a; TCPStats.DrainResets: 1")
}
