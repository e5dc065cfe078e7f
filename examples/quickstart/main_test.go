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

// TestQuickstart runs the tour end to end on free ports.
func TestQuickstart(t *testing.T) {
	var out syncbuf.Buffer
	require.NoError(t, run(context.Background(), &out, "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", true))
	s := out.String()
	assert.Contains(t, s, "(web-1×3, web-2×3, web-3×3)", s)
	assert.Regexp(t, `sticky\):  .*\(web-\d×5\)`, s, "one target takes every request of the session")
	assert.Contains(t, s, "health change: web/web-2 is no longer serving: connection refused")
	assert.Contains(t, s, "HTTP  now:            web-1 web-3 web-1 web-3 web-1 web-3")
	assert.Contains(t, s, "target web-2")
	assert.Contains(t, s, "unhealthy: connection refused")
}
