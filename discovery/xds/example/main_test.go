package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDemo(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, demo(&out))
	assert.Equal(t, `node 0, version 1, answered by: a b c
node 1, version 1, answered by: a b c
node 0, version 2 (a draining), answered by: b c
node 1, version 2 (a draining), answered by: b c
`, out.String())
}
