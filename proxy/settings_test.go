package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// requireInvalid checks that err reports proxy p's field, wrapping
// ErrInvalid, as a *ConfigError.
func requireInvalid(t *testing.T, err error, p, field string) {
	t.Helper()
	require.ErrorIs(t, err, ErrInvalid)
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, p, ce.Proxy)
	assert.Equal(t, field, ce.Field)
	assert.True(t, strings.HasPrefix(err.Error(), "proxy: "+p+"."+field+": "), err.Error())
}

// fields returns the Fields of every ConfigError joined in err.
func fields(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		if ce, ok := e.(*ConfigError); ok {
			out = append(out, ce.Field)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	return out
}

func TestSetUpstreamRefuses(t *testing.T) {
	good := newTestUpstream(t)
	for _, c := range []struct {
		name string
		u    *Upstream
	}{
		{"nil", nil},
		{"no balancer", &Upstream{Name: "web"}},
		{"proxy protocol 3", &Upstream{Name: "web", Balancer: good.Balancer, ProxyProtocol: 3}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp, up := &TCP{}, &UDP{}
			require.NoError(t, tp.SetUpstream(good))
			require.NoError(t, up.SetUpstream(good))
			requireInvalid(t, tp.SetUpstream(c.u), "TCP", "SetUpstream")
			requireInvalid(t, up.SetUpstream(c.u), "UDP", "SetUpstream")
			assert.Same(t, good, tp.Upstream(), "a refused value changes nothing")
			assert.Same(t, good, up.Upstream())
		})
	}
}

func TestSetRouterRefuses(t *testing.T) {
	h := &HTTP{}
	assert.Nil(t, h.Router())
	r := forwardTo(t, upstreamOf(t, "web"))
	require.NoError(t, h.SetRouter(r))
	requireInvalid(t, h.SetRouter(nil), "HTTP", "SetRouter")
	requireInvalid(t, h.SetRouter(&Router{}), "HTTP", "SetRouter")
	assert.Same(t, r, h.Router(), "a refused value changes nothing")
}

func TestSetTimeoutsRefuses(t *testing.T) {
	type setter interface{ SetTimeouts(Timeouts) error }
	for name, p := range map[string]setter{"TCP": &TCP{}, "UDP": &UDP{}, "HTTP": &HTTP{}} {
		for _, c := range []struct {
			field string
			t     Timeouts
		}{
			{"Timeouts.Connect", Timeouts{Connect: -1}},
			{"Timeouts.Idle", Timeouts{Idle: -time.Second}},
			{"Timeouts.Request", Timeouts{Request: -1}},
			{"Timeouts.Response", Timeouts{Response: -1}},
			{"Timeouts.Header", Timeouts{Header: -1}},
		} {
			requireInvalid(t, p.SetTimeouts(c.t), name, c.field)
		}
		err := p.SetTimeouts(Timeouts{Connect: -1, Idle: -1})
		assert.Equal(t, []string{"Timeouts.Connect", "Timeouts.Idle"}, fields(err), "%s: every problem at once", name)
		require.NoError(t, p.SetTimeouts(Timeouts{}), name)
	}

	// A refused value changes nothing.
	tp := &TCP{}
	require.NoError(t, tp.SetTimeouts(Timeouts{Connect: time.Second, Idle: time.Minute}))
	require.Error(t, tp.SetTimeouts(Timeouts{Connect: -1}))
	assert.Equal(t, Timeouts{Connect: time.Second, Idle: time.Minute, Header: DefaultHeaderTimeout}, tp.timeouts())
	up := &UDP{}
	require.NoError(t, up.SetTimeouts(Timeouts{Idle: time.Minute}))
	require.Error(t, up.SetTimeouts(Timeouts{Idle: -1}))
	assert.Equal(t, int64(time.Minute), up.idleTimeout.Load())
	h := &HTTP{}
	require.NoError(t, h.SetTimeouts(Timeouts{Response: time.Second}))
	require.Error(t, h.SetTimeouts(Timeouts{Response: -1}))
	assert.Equal(t, time.Second, h.tmo.Load().Response)
	assert.Equal(t, DefaultIdleTimeout, h.tmo.Load().Idle)
}

func TestSetTLSConfigRefuses(t *testing.T) {
	p := &TCP{}
	requireInvalid(t, p.SetTLSConfig(&tls.Config{}), "TCP", "SetTLSConfig")
	assert.Nil(t, p.tls.Load())
	cfg := &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil }}
	require.NoError(t, p.SetTLSConfig(cfg))
	require.NoError(t, p.SetTLSConfig(nil), "nil turns TLS off")
}

func TestValidate(t *testing.T) {
	require.NoError(t, (&TCP{}).Validate())
	require.NoError(t, (&UDP{}).Validate())
	require.NoError(t, (&HTTP{}).Validate())

	requireInvalid(t, (&TCP{ConnectAttempts: -1}).Validate(), "TCP", "ConnectAttempts")

	h := &HTTP{MaxHeaderBytes: -1, MaxBodyBytes: -5, MaxURILength: -1, MaxIdleConnsPerTarget: -1,
		Retry: Retry{Attempts: -1, Timeout: -1, MinPerSecond: -1, Ratio: 20}, TLS: &TLS{}}
	err := h.Validate()
	require.ErrorIs(t, err, ErrInvalid)
	assert.Equal(t, []string{"MaxHeaderBytes", "MaxBodyBytes", "MaxURILength", "MaxIdleConnsPerTarget",
		"Retry.Attempts", "Retry.Timeout", "Retry.MinPerSecond", "Retry.Ratio", "TLS"}, fields(err), "every problem at once")
	assert.Contains(t, err.Error(), "proxy: HTTP.MaxBodyBytes: -5 is negative")
	assert.Contains(t, err.Error(), "proxy: HTTP.Retry.Ratio: 20 is outside 0..10")
	assert.Contains(t, err.Error(), "proxy: HTTP.TLS: tls: Certificates is nil")
}

// TestServeInvalid: Serve returns Validate's error before accepting, and
// closes the listener.
func TestServeInvalid(t *testing.T) {
	closed := func(ln net.Listener) bool {
		_, err := ln.Accept()
		return errors.Is(err, net.ErrClosed)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	requireInvalid(t, (&TCP{ConnectAttempts: -1}).Serve(ln), "TCP", "ConnectAttempts")
	assert.True(t, closed(ln))

	ln, err = net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	h := configured(t, &HTTP{MaxBodyBytes: -5}, forwardTo(t, upstreamOf(t, "web")))
	requireInvalid(t, h.Serve(ln), "HTTP", "MaxBodyBytes")
	assert.True(t, closed(ln))
	require.NoError(t, h.Close())
}

// TestServeHTTPInvalid: a proxy mounted in another server answers 500 to
// every request when its configuration is invalid, and logs why once.
func TestServeHTTPInvalid(t *testing.T) {
	var logs logBuffer
	h := configured(t, &HTTP{MaxURILength: -1, ErrorLog: logs.logger()}, forwardTo(t, upstreamOf(t, "web")))
	for range 3 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		assert.Equal(t, http.StatusInternalServerError, w.Code)
	}
	out := logs.String()
	assert.Equal(t, 1, strings.Count(out, "configuration is invalid"), out)
	assert.Contains(t, out, "HTTP.MaxURILength: -1 is negative")
	require.NoError(t, h.Close())
}
