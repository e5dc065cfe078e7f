package proxy

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHTTPForward(t *testing.T) {
	a := newTarget(t, "a", nil)
	up := upstreamOf(t, "web", a)
	var logs logBuffer
	h := configured(t, &HTTP{AccessLog: logs.logger()}, forwardTo(t, up))
	addr := serve(t, h)
	code, body := get(t, client(t), "http://"+addr+"/x?y=1")
	assert.Equal(t, 200, code)
	assert.Equal(t, "a", body)
	last := a.lastRequest()
	assert.Equal(t, "127.0.0.1", last.Header.Get("X-Forwarded-For"))
	assert.Equal(t, "http", last.Header.Get("X-Forwarded-Proto"))
	assert.Equal(t, addr, last.Header.Get("X-Forwarded-Host"))
	assert.Equal(t, "/x?y=1", last.RequestURI)

	m := lastLog(t, h, &logs)
	assert.Equal(t, "GET", m["method"])
	assert.Equal(t, "/x", m["path"])
	assert.Equal(t, addr, m["host"])
	assert.Equal(t, "default", m["rule"])
	assert.Equal(t, "web", m["group"])
	assert.EqualValues(t, 200, m["status"])
	assert.Equal(t, "200", m["upstream_status"])
	assert.Equal(t, a.addr(), m["upstream_addr"])
	assert.EqualValues(t, 1, m["bytes_out"])
	for _, k := range []string{"request_time", "upstream_connect_time", "upstream_header_time", "upstream_response_time"} {
		assert.Regexp(t, `^\d+\.\d{3}$`, m[k], k)
	}
	assert.Regexp(t, `^127\.0\.0\.1:\d+$`, m["client"])

	st := h.Stats()
	assert.Equal(t, uint64(1), st.Requests)
	assert.Equal(t, StatusClasses{0, 1, 0, 0, 0}, st.Status)
	assert.Equal(t, StatusClasses{0, 1, 0, 0, 0}, st.UpstreamStatus)
	assert.Equal(t, uint64(1), st.Connections)
	ts := up.Stats().Targets
	require.Len(t, ts, 1)
	assert.Equal(t, uint64(1), ts[0].Requests)
	assert.Zero(t, ts[0].ActiveRequests)
	assert.Equal(t, StatusClasses{0, 1, 0, 0, 0}, ts[0].Status)
	assert.Positive(t, ts[0].AvgResponseTime)
}

func TestAccessLogFormat(t *testing.T) {
	assert.Equal(t, "0.000", seconds(0))
	assert.Equal(t, "0.003", seconds(3*time.Millisecond+900*time.Microsecond))
	assert.Equal(t, "12.050", seconds(12*time.Second+50*time.Millisecond))
	assert.Equal(t, "-", seconds(-1))
	as := []attempt{{addr: "a", status: 0, header: -1}, {addr: "b", status: 200, header: time.Millisecond}}
	assert.Equal(t, "-, 0.001", joinAttempts(as, func(a *attempt) string { return seconds(a.header) }))
	assert.Equal(t, "-", joinAttempts(nil, func(a *attempt) string { return a.addr }))
}
