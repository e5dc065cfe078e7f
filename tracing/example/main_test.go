package main

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRun runs the example with spans printed: one request, retried, makes
// two client spans under one server span, and the target got the second
// attempt's context.
func TestRun(t *testing.T) {
	var out strings.Builder
	require.NoError(t, run(context.Background(), "", "", &out))
	text := out.String()
	t.Log("\n" + text)
	lines := strings.Split(strings.TrimSpace(text), "\n")
	require.Len(t, lines, 4)
	down := regexp.MustCompile(`^client span "GET" id=(\w+) parent=(\w+) .*lbkit\.target=down .*error\.type=connection_refused`)
	up := regexp.MustCompile(`^client span "GET" id=(\w+) parent=(\w+) .*lbkit\.target=up .*http\.request\.resend_count=1 .*http\.response\.status_code=200`)
	server := regexp.MustCompile(`^server span "GET default" id=(\w+) parent=- .*url\.path=/cart .*http\.response\.status_code=200 lbkit\.retries=1`)
	d, u, s := down.FindStringSubmatch(lines[0]), up.FindStringSubmatch(lines[1]), server.FindStringSubmatch(lines[2])
	require.NotNil(t, d, lines[0])
	require.NotNil(t, u, lines[1])
	require.NotNil(t, s, lines[2])
	require.Equal(t, s[1], d[2])
	require.Equal(t, s[1], u[2])
	require.Regexp(t, `^status 200; the target got traceparent \[00-\w{32}-`+u[1]+`-01\]$`, lines[3])
}
