package main

import (
	"bytes"
	"context"
	"sync"
	"testing"

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

func TestSidecar(t *testing.T) {
	var out output
	require.NoError(t, run(context.Background(), &out, "", "", "/healthz", "", true))
	s := out.String()
	assert.Contains(t, s, "health: local serving=true")
	assert.Contains(t, s, "200 service says hello to 127.0.0.1")
	assert.Contains(t, s, `"upstream_status":"200"`, "the access log")
	assert.Contains(t, s, "OK: traffic can reach targets")
}
