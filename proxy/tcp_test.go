package proxy

import (
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTCPEcho(t *testing.T) {
	checkFDs(t)
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			a := startTCPTarget(t, network, "a", echoHandler)
			p := &TCP{Flows: newTestFlows(t)}
			p.SetUpstream(newTestUpstream(t, a))
			addr := startTCPProxy(t, p, network)
			c := dial(t, network, addr)
			require.Equal(t, "hello", exchange(t, c, "hello", 0))
			require.NoError(t, c.(*net.TCPConn).CloseWrite())
			require.ErrorIs(t, readErr(c), io.EOF)
			waitFor(t, "connection ended", func() bool { return p.Stats().Active == 0 })
			st := p.Stats()
			require.Equal(t, uint64(1), st.Forwarded)
			require.Equal(t, uint64(5), st.BytesIn)
			require.Equal(t, uint64(5), st.BytesOut)
		})
	}
}
