package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// output is a buffer safe for the example's goroutines and the test.
type output struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

func TestCustomProxy(t *testing.T) {
	var out output
	require.NoError(t, run(context.Background(), &out, "", nil, time.Minute, true))
	s := out.String()
	assert.Equal(t, 2, strings.Count(s, "one: hi"), "least-connections spreads held connections: %s", s)
	assert.Equal(t, 2, strings.Count(s, "two: hi"), s)
	assert.Contains(t, s, "flows: new 4, active 4")
}
