package main

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/lbkit/lbkit/internal/syncbuf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// answers returns the target names a line of the output lists after "by:".
func answers(t *testing.T, s, step string) []string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(step) + `:.*by: (.*)$`).FindStringSubmatch(s)
	require.NotNil(t, m, "no line for %q in:\n%s", step, s)
	return strings.Fields(m[1])
}

func count(names []string, name string) int {
	n := 0
	for _, x := range names {
		if x == name {
			n++
		}
	}
	return n
}

// TestUDPFailover runs the demonstration and checks what the guide says it
// shows: round-robin over two healthy targets, every flow on b once a's TCP
// health port is down, flows staying on b when a recovers, and new clients
// reaching a again.
func TestUDPFailover(t *testing.T) {
	var out syncbuf.Buffer
	require.NoError(t, run(context.Background(), &out, false))
	s := out.String()
	assert.Regexp(t, `health check: tcp on port \d+, every 500ms, timeout 400ms, healthy after 2, unhealthy after 3`, s)

	before := answers(t, s, "both healthy")
	require.Len(t, before, 4)
	assert.Equal(t, 2, count(before, "a"), "one flow per client, round-robin: %v", before)
	assert.Equal(t, 2, count(before, "b"), before)

	assert.Contains(t, s, "health change: target a serving=false: connection refused")
	assert.Equal(t, []string{"b", "b", "b", "b"}, answers(t, s, "a's health port down"))
	assert.Contains(t, s, "(UDPStats.Failovers): 2")

	assert.Regexp(t, `health change: target a serving=true: .+`, s)
	assert.Equal(t, []string{"b", "b", "b", "b"}, answers(t, s, "a healthy again"), "a flow keeps its healthy target")
	fresh := answers(t, s, "two new clients")
	assert.Equal(t, 1, count(fresh, "a"), "new flows are balanced over both again: %v", fresh)
}
