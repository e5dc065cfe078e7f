package healthcheck

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"
)

// checkCtx is the context a Monitor gives a check: a deadline and the
// configured timeout. Built once, so the benchmarks measure the checks.
func checkCtx(b *testing.B) context.Context {
	ctx, cancel := ContextWithTimeout(context.Background(), time.Hour)
	b.Cleanup(cancel)
	return ctx
}

// warmup runs f a few hundred times before the timed loop (b.Loop resets
// the timer), so neither side of a pair pays for the other's leftovers
// (sockets closing, a cold connection pool) or for being first.
func warmup(b *testing.B, f func() error) {
	for range 300 {
		if err := f(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheck measures one check against a loopback server, each beside
// the bare standard-library operation it wraps: a net.Dialer dial and close
// for TCP, an http.Client GET with the body drained for HTTP.
func BenchmarkCheck(b *testing.B) {
	ctx := checkCtx(b)
	srv := newTCPServer(b, "tcp", "127.0.0.1:0")
	tcpTarget := Target{ID: "a", Addr: srv.addr}

	b.Run("proto=tcp/impl=healthcheck", func(b *testing.B) {
		check := func() error { return TCP{}.Check(ctx, tcpTarget) }
		warmup(b, check)
		b.ReportAllocs()
		for b.Loop() {
			if err := check(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto=tcp/impl=dialer", func(b *testing.B) {
		var d net.Dialer
		dial := func() error {
			c, err := d.DialContext(ctx, "tcp", srv.addr)
			if err != nil {
				return err
			}
			return c.Close()
		}
		warmup(b, dial)
		b.ReportAllocs()
		for b.Loop() {
			if err := dial(); err != nil {
				b.Fatal(err)
			}
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
			check := func() error { return h.Check(ctx, httpTarget) }
			warmup(b, check)
			b.ReportAllocs()
			for b.Loop() {
				if err := check(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("proto="+proto+"/impl=httpclient", func(b *testing.B) {
			tr := &http.Transport{DisableKeepAlives: !keepAlive}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			url := hs.URL + "/ok"
			get := func() error {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				if err != nil {
					return err
				}
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return errors.New(resp.Status)
				}
				return nil
			}
			warmup(b, get)
			b.ReportAllocs()
			for b.Loop() {
				if err := get(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMonitorRound measures the Monitor's own cost per check: one op
// is one round of 1000 due checks of a checker that does nothing, driven by
// a fake clock (heap, lock, context, bookkeeping, result history). The
// baseline is the least machinery that could run the same checks: a
// goroutine per check bounded by the same semaphore, no schedule, no state.
func BenchmarkMonitorRound(b *testing.B) {
	const n = 1000
	noop := CheckerFunc(func(context.Context, Target) error { return nil })
	b.Run("impl=monitor", func(b *testing.B) {
		clk := newFakeClock()
		done := make(chan struct{}, n)
		m, err := New(noop, withClock(clk), WithInterval(time.Second), WithTimeout(time.Second),
			WithRand(func() uint64 { return 0 }), // every first check due at once
			withResultHook(func(string, time.Time, Result) { done <- struct{}{} }))
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		ts := make([]Target, n)
		for i := range ts {
			ts[i] = Target{ID: "t" + strconv.Itoa(i), Addr: "127.0.0.1:1"}
		}
		if err := m.Add(ts...); err != nil {
			b.Fatal(err)
		}
		for range n {
			<-done
		}
		b.ReportAllocs()
		for b.Loop() {
			clk.Advance(time.Second)
			for range n {
				<-done
			}
		}
	})
	b.Run("impl=semaphore", func(b *testing.B) {
		sem := semaphore.NewWeighted(DefaultMaxConcurrent)
		ctx := context.Background()
		t := Target{ID: "t", Addr: "127.0.0.1:1"}
		b.ReportAllocs()
		for b.Loop() {
			var wg sync.WaitGroup
			for range n {
				if err := sem.Acquire(ctx, 1); err != nil {
					b.Fatal(err)
				}
				wg.Go(func() {
					defer sem.Release(1)
					cctx, cancel := context.WithTimeout(ctx, time.Second)
					_ = noop.Check(cctx, t)
					cancel()
				})
			}
			wg.Wait()
		}
	})
}
