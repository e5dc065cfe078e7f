package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Conn is a raw HTTP/2 client connection to an HTTPS proxy, for sending
// frames a well-behaved client would not.
type h2Conn struct {
	c   *tls.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
}

func dialH2(t testing.TB, addr string, ca *testCA) *h2Conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "x.example.com", RootCAs: ca.pool, NextProtos: []string{"h2"}})
	require.NoError(t, err)
	require.Equal(t, "h2", c.ConnectionState().NegotiatedProtocol)
	t.Cleanup(func() { c.Close() })
	_, err = io.WriteString(c, http2.ClientPreface)
	require.NoError(t, err)
	h := &h2Conn{c: c, fr: http2.NewFramer(c, c)}
	h.enc = hpack.NewEncoder(&h.buf)
	require.NoError(t, h.fr.WriteSettings())
	return h
}

// headers sends a HEADERS frame for a request on stream id.
func (h *h2Conn) headers(t testing.TB, id uint32, method string, endStream bool, extra ...string) {
	t.Helper()
	h.buf.Reset()
	fields := append([]string{":method", method, ":scheme", "https", ":authority", "x.example.com", ":path", "/"}, extra...)
	for i := 0; i+1 < len(fields); i += 2 {
		require.NoError(t, h.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]}))
	}
	require.NoError(t, h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.buf.Bytes(), EndStream: endStream, EndHeaders: true}))
}

// TestHTTP2MalformedBody: a stream whose DATA is shorter than its
// Content-Length is reset, never answered 200, and logged with 400.
func TestHTTP2MalformedBody(t *testing.T) {
	ca := newCA(t)
	var certs Certificates
	require.NoError(t, certs.Set(WildcardOneLabel, ca.issue(t, false, "x.example.com")))
	var bodies atomic.Int64
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if b, err := io.ReadAll(r.Body); err == nil && len(b) > 0 {
			bodies.Add(1)
		}
	})
	var logs logBuffer
	h := configured(t, &HTTP{TLS: &TLS{Certificates: &certs}, AccessLog: logs.logger()}, forwardTo(t, upstreamOf(t, "web", tg)))
	addr := serve(t, h)
	c := dialH2(t, addr, ca)
	c.headers(t, 1, "POST", false, "content-length", "10")
	require.NoError(t, c.fr.WriteData(1, true, []byte("abc")))
	require.NoError(t, c.c.SetReadDeadline(time.Now().Add(10*time.Second)))
	for {
		f, err := c.fr.ReadFrame()
		require.NoError(t, err)
		if hf, ok := f.(*http2.HeadersFrame); ok && hf.StreamID == 1 {
			t.Fatalf("the stream was answered: %v", hf)
		}
		if rf, ok := f.(*http2.RSTStreamFrame); ok && rf.StreamID == 1 {
			break
		}
	}
	m := lastLog(t, h, &logs)
	assert.EqualValues(t, 400, m["status"])
	assert.Contains(t, m["error"], "stream reset")
	assert.Zero(t, bodies.Load(), "the target never got a whole body")
	assert.Equal(t, uint64(1), h.Stats().MalformedBodies)
}

// TestHTTP2RapidReset: clients that open streams and reset them at once
// (CVE-2023-44487) do not turn into a storm of connections to the target:
// the connections stay within the circuit breaker's limit, answers of
// reset requests are read in the background so the connections are
// reused, and a normal client keeps getting its answers.
func TestHTTP2RapidReset(t *testing.T) {
	ca := newCA(t)
	var certs Certificates
	require.NoError(t, certs.Set(WildcardOneLabel, ca.issue(t, false, "x.example.com")))
	var targetConns, open, maxOpen atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond) // a target that takes a moment: the reset comes first
		io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			targetConns.Add(1)
			n := open.Add(1)
			for m := maxOpen.Load(); n > m && !maxOpen.CompareAndSwap(m, n); m = maxOpen.Load() {
			}
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	tg := &target{Server: srv, name: "a"}
	up := upstreamOf(t, "web", tg)
	const limit = 16
	up.SetLimits(Limits{MaxConnsPerTarget: limit, MaxPendingRequests: 4096})
	h := configured(t, &HTTP{TLS: &TLS{Certificates: &certs}}, forwardTo(t, up))
	addr := serve(t, h)

	// The attack: 4 connections, 400 streams each, each reset right after
	// its HEADERS.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 4 {
		c := dialH2(t, addr, ca)
		wg.Add(2)
		go func() { // read (and drop) what the server sends
			defer wg.Done()
			_ = c.c.SetReadDeadline(time.Now().Add(20 * time.Second))
			for ctx.Err() == nil {
				if _, err := c.fr.ReadFrame(); err != nil {
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := uint32(0); i < 400 && ctx.Err() == nil; i++ {
				id := 1 + 2*i
				c.headers(t, id, "GET", true)
				if err := c.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
					return
				}
			}
		}()
	}

	// A normal client meanwhile.
	var h2 http.Protocols
	h2.SetHTTP2(true)
	tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "x.example.com", RootCAs: ca.pool}, Protocols: &h2}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ok := 0
	for range 50 {
		resp, err := cl.Get("https://" + addr + "/")
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && string(b) == "ok" {
			ok++
		}
	}
	cancel()
	assert.Equal(t, 50, ok, "the normal client got every answer")
	// The proxy counts its connections exactly (TargetConnections, below);
	// the target sees a closed one go only when it reads the close, which
	// may come after it accepts the next: a few more overlap there.
	assert.LessOrEqual(t, maxOpen.Load(), int64(limit+4), "target connections open at once stay within the limit")
	// A connection whose reset request's answer could not be drained in
	// time is closed and another made later; a storm would be hundreds.
	assert.LessOrEqual(t, targetConns.Load(), int64(2*limit), "target connections made")
	st := up.Stats().Targets[0]
	assert.LessOrEqual(t, st.TargetConnections, int64(limit))
	t.Logf("target connections made: %d; answers drained for reuse: %d; refused by the breaker: %d",
		targetConns.Load(), h.Stats().Drained, st.BreakerRefused)
	// Close the attackers, then wait for their goroutines.
	h.Close()
	wg.Wait()
}
