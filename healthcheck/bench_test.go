package healthcheck

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// checkCtx is the context a Monitor gives a check: a deadline and the
// configured timeout. Built once, so the benchmarks measure the checks.
func checkCtx(b *testing.B) context.Context {
	ctx, cancel := ContextWithTimeout(context.Background(), time.Hour)
	b.Cleanup(cancel)
	return ctx
}

// BenchmarkCheck measures one check against a loopback server, each beside
// the bare standard-library operation it wraps: a net.Dialer dial and close
// for TCP, an http.Client GET with the body drained for HTTP.
func BenchmarkCheck(b *testing.B) {
	ctx := checkCtx(b)
	srv := newTCPServer(b, "tcp", "127.0.0.1:0")
	tcpTarget := Target{ID: "a", Addr: srv.addr}

	b.Run("proto=tcp/impl=healthcheck", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := (TCP{}).Check(ctx, tcpTarget); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto=tcp/impl=dialer", func(b *testing.B) {
		b.ReportAllocs()
		var d net.Dialer
		for b.Loop() {
			c, err := d.DialContext(ctx, "tcp", srv.addr)
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	})

	hs := httptest.NewServer(testMux(nil, nil))
	defer hs.Close()
	httpTarget := Target{ID: "a", Addr: hs.Listener.Addr().String()}
	for _, keepAlive := range []bool{false, true} {
		proto := "http"
		if keepAlive {
			proto = "http-keepalive"
		}
		b.Run("proto="+proto+"/impl=healthcheck", func(b *testing.B) {
			h, err := NewHTTP(HTTPConfig{Path: "/ok", KeepAlive: keepAlive})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			b.ReportAllocs()
			for b.Loop() {
				if err := h.Check(ctx, httpTarget); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("proto="+proto+"/impl=httpclient", func(b *testing.B) {
			tr := &http.Transport{DisableKeepAlives: !keepAlive}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			url := hs.URL + "/ok"
			b.ReportAllocs()
			for b.Loop() {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				if err != nil {
					b.Fatal(err)
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatal(resp.Status)
				}
			}
		})
	}
}
