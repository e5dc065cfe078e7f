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

func TestSidecar(t *testing.T) {
	var out syncbuf.Buffer
	require.NoError(t, run(context.Background(), &out, "", "", "/healthz", "", true))
	s := out.String()
	assert.Contains(t, s, "health: local serving=true")
	assert.Contains(t, s, "200 service says hello to 127.0.0.1")
	assert.Contains(t, s, `"upstream_status":"200"`, "the access log")
	assert.Contains(t, s, "OK: traffic can reach targets")
}
