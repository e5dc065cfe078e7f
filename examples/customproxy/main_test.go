package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lbkit/lbkit/internal/syncbuf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCustomProxy(t *testing.T) {
	var out syncbuf.Buffer
	require.NoError(t, run(context.Background(), &out, "", nil, time.Minute, true))
	s := out.String()
	assert.Equal(t, 2, strings.Count(s, "one: hi"), "least-connections spreads held connections: %s", s)
	assert.Equal(t, 2, strings.Count(s, "two: hi"), s)
	assert.Contains(t, s, "flows: new 4, active 4")
}
