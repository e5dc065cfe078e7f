package main

import (
	"bytes"
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDemo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	require.NoError(t, err)
	demoPort = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var out bytes.Buffer
	require.NoError(t, demo(context.Background(), &out))
	assert.Equal(t, `two pods ready, answered by: pod-a pod-b
pod-a terminating, answered by: pod-b
discovery: kubernetes shop/web port http (watch): 2 targets, 1 draining, last change HH:MM:SS
- deregistered, draining until HH:MM:SS: no new traffic; established connections and sticky sessions continue until then
`, out.String())
}
