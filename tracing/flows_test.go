package tracing_test

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/tracing"
)

// TestFlowSpans: with lb.WithFlowObserver, a TCP flow through a listener
// ends as a span of its own with the flow's listener, client, target,
// bytes each way and close reason, from its start to its end.
func TestFlowSpans(t *testing.T) {
	exp, tp, _ := newProvider()
	defer tp.Shutdown(context.Background())
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	l, err := lb.New(
		lb.WithListener("db", lb.TCP, "127.0.0.1:0", lb.WithForwardTo("pg")),
		lb.WithTargetGroup("pg", lb.TCP, lb.WithTarget(echo.Addr().String(), lb.WithTargetID("pg-1")), lb.WithoutHealthCheck()),
		lb.WithFlowObserver(tracing.New(tp)),
	)
	require.NoError(t, err)
	require.NoError(t, l.Start())
	defer l.Close()
	addr, ok := l.Addr("db")
	require.True(t, ok)

	start := time.Now()
	c, err := net.Dial("tcp", addr.String())
	require.NoError(t, err)
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = c.Write([]byte("ping!"))
	require.NoError(t, err)
	_, err = io.ReadFull(c, make([]byte, 5))
	require.NoError(t, err)
	client := c.LocalAddr().(*net.TCPAddr)
	c.Close()

	require.Eventually(t, func() bool { return len(exp.GetSpans()) == 1 }, 10*time.Second, time.Millisecond)
	s := exp.GetSpans().Snapshots()[0]
	require.Equal(t, "tcp db", s.Name())
	require.Equal(t, trace.SpanKindServer, s.SpanKind())
	require.False(t, s.StartTime().Before(start.Add(-time.Second)))
	require.False(t, s.EndTime().Before(s.StartTime()))
	a := attrs(s)
	require.Equal(t, "tcp", a["network.transport"].AsString())
	require.Equal(t, "db", a[tracing.ListenerKey].AsString())
	require.Equal(t, "pg", a[tracing.GroupKey].AsString())
	require.Equal(t, "pg-1", a[tracing.TargetKey].AsString())
	require.Equal(t, "127.0.0.1", a["client.address"].AsString())
	require.Equal(t, int64(client.Port), a["client.port"].AsInt64())
	require.Equal(t, int64(5), a[tracing.BytesInKey].AsInt64())
	require.Equal(t, int64(5), a[tracing.BytesOutKey].AsInt64())
	require.Equal(t, "client_close", a[tracing.CloseReasonKey].AsString())
}
