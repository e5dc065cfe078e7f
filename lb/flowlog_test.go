package lb

import (
	"encoding/json"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lbkit/lbkit/internal/syncbuf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// jsonLog is a JSON log to parse back, written from any goroutine.
type jsonLog struct{ buf syncbuf.Buffer }

func (j *jsonLog) logger() *slog.Logger { return slog.New(slog.NewJSONHandler(&j.buf, nil)) }

// records returns the records logged so far.
func (j *jsonLog) records(t *testing.T) []map[string]any {
	t.Helper()
	text := j.buf.String()
	var rs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		rs = append(rs, m)
	}
	return rs
}

// wait returns the n-th record, waiting for it.
func (j *jsonLog) wait(t *testing.T, n int) map[string]any {
	t.Helper()
	require.Eventually(t, func() bool { return len(j.records(t)) >= n }, 10*time.Second, time.Millisecond, "flow log record %d", n)
	return j.records(t)[n-1]
}

// TestFlowLog parses the flow log of a TCP and a UDP listener back field
// by field: a TCP connection the client closes, one refused by the ACL, a
// UDP flow closed with the load balancer; a reload turns the log off.
func TestFlowLog(t *testing.T) {
	tcpT := newEchoTarget(t, "t1")
	udpT := newUDPEcho(t, "u1")
	var log jsonLog
	// The UDP target's health: the TCP target's port on the same host.
	_, port, err := net.SplitHostPort(tcpT.addr)
	require.NoError(t, err)
	check := fastHealth
	check.Protocol, check.Port = TCP, mustAtoi(t, port)
	opts := func(flowLog bool, deny string) []Option {
		var lo []ListenerOption
		if flowLog {
			lo = append(lo, WithFlowLog(log.logger()))
		}
		return []Option{
			WithListener("tcp", TCP, "127.0.0.1:0", append([]ListenerOption{WithForwardTo("app"), WithDeny(deny)}, lo...)...),
			WithListener("dns", UDP, "127.0.0.1:0", append([]ListenerOption{WithForwardTo("udp")}, lo...)...),
			WithTargetGroup("app", TCP, WithTarget(tcpT.addr, WithTargetID("a1"))),
			WithTargetGroup("udp", UDP, WithTarget(udpT.addr, WithTargetID("u1")), WithHealthCheck(check)),
		}
	}
	l := startLB(t, opts(true, "10.99.0.0/16")...)
	waitServing(t, l, "app", 1)
	waitServing(t, l, "udp", 1)

	c, err := net.Dial("tcp", addr(t, l, "tcp"))
	require.NoError(t, err)
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = c.Write([]byte("hello\n"))
	require.NoError(t, err)
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "t1 hello\n", string(buf[:n]))
	client := c.LocalAddr().String()
	c.Close()

	r := log.wait(t, 1)
	assert.Equal(t, "flow", r["msg"])
	assert.Equal(t, "INFO", r["level"])
	assert.Equal(t, "tcp", r["proto"])
	assert.Equal(t, "tcp", r["listener"])
	assert.Equal(t, "app", r["group"])
	assert.Equal(t, client, r["client"])
	assert.Equal(t, tcpT.addr, r["target"])
	assert.Equal(t, "a1", r["target_id"])
	assert.EqualValues(t, 6, r["bytes_in"])
	assert.EqualValues(t, 9, r["bytes_out"])
	assert.Regexp(t, `^\d+\.\d{3}$`, r["duration"])
	assert.Equal(t, "client_close", r["reason"])
	assert.NotContains(t, r, "datagrams_in")
	assert.NotContains(t, r, "error")

	// Refused by the ACL.
	require.NoError(t, l.Reconfigure(opts(true, "127.0.0.0/8")...))
	if c, err = net.Dial("tcp", addr(t, l, "tcp")); err == nil { // or reset at once
		require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
		_, err = c.Read(buf)
		require.Error(t, err, "refused")
		c.Close()
	}
	r = log.wait(t, 2)
	assert.Equal(t, "refused_acl", r["reason"])
	assert.Equal(t, "tcp", r["listener"])
	assert.Contains(t, r["error"], "denied")

	// A UDP flow, one datagram each way, open when the load balancer
	// closes.
	require.NoError(t, l.Reconfigure(opts(true, "10.99.0.0/16")...))
	u, err := net.Dial("udp", addr(t, l, "dns"))
	require.NoError(t, err)
	defer u.Close()
	require.Equal(t, "u1", udpAsk(t, u, "query"))
	uclient := u.LocalAddr().String()
	l.Close()
	r = log.wait(t, 3)
	assert.Equal(t, "udp", r["proto"])
	assert.Equal(t, "dns", r["listener"])
	assert.Equal(t, "udp", r["group"])
	assert.Equal(t, uclient, r["client"])
	assert.Equal(t, "u1", r["target_id"])
	assert.EqualValues(t, 5, r["bytes_in"])
	assert.EqualValues(t, 8, r["bytes_out"])
	assert.EqualValues(t, 1, r["datagrams_in"])
	assert.EqualValues(t, 1, r["datagrams_out"])
	assert.Equal(t, "shutdown", r["reason"])
}

// TestFlowLogOff: without FlowLog nothing is logged, and a reload that
// turns it on applies to the flows that end afterwards, on a listener
// whose proxy keeps serving.
func TestFlowLogOff(t *testing.T) {
	tcpT := newEchoTarget(t, "t1")
	var log jsonLog
	opts := func(on bool) []Option {
		lo := []ListenerOption{WithForwardTo("app")}
		if on {
			lo = append(lo, WithFlowLog(log.logger()))
		}
		return []Option{
			WithListener("tcp", TCP, "127.0.0.1:0", lo...),
			WithTargetGroup("app", TCP, WithTarget(tcpT.addr)),
		}
	}
	l := startLB(t, opts(false)...)
	waitServing(t, l, "app", 1)
	talk := func() {
		c, err := net.Dial("tcp", addr(t, l, "tcp"))
		require.NoError(t, err)
		require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
		_, err = c.Write([]byte("x\n"))
		require.NoError(t, err)
		_, err = c.Read(make([]byte, 16))
		require.NoError(t, err)
		c.Close()
	}
	talk()
	require.Eventually(t, func() bool { return l.Stats().Listeners[0].TCP.Active == 0 }, 10*time.Second, time.Millisecond)
	assert.Empty(t, log.records(t))
	require.NoError(t, l.Reconfigure(opts(true)...))
	talk()
	assert.Equal(t, "client_close", log.wait(t, 1)["reason"])

	_, err := New(WithListener("h", HTTP, "127.0.0.1:0", WithForwardTo("web"), WithFlowLog(log.logger())),
		WithTargetGroup("web", HTTP, WithTarget("127.0.0.1:1")))
	assert.ErrorContains(t, err, "flow logs are for tcp, tls and udp listeners")
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	require.NoError(t, err)
	return n
}
