//go:build linux

package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/balancer"
)

// TestEventLoopNoGoroutinePerConnection: connections served by the event
// loops, kept alive between requests, cost no goroutine each (the
// engine's goroutines would be one per connection).
func TestEventLoopNoGoroutinePerConnection(t *testing.T) {
	tg := newTarget(t, "a", nil)
	h := configured(t, &HTTP{EventLoop: true}, forwardTo(t, upstreamOf(t, "web", tg)))
	addr := serve(t, h)
	// One connection first: the loops start, the target connection and
	// its server's goroutine exist.
	c0, br0 := dialRaw(t, addr)
	_, err := io.WriteString(c0, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	readResp(t, br0, "GET")
	before := runtime.NumGoroutine()
	const n = 50
	for range n {
		c, br := dialRaw(t, addr)
		_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, body := readResp(t, br, "GET")
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, "a", body)
	}
	waitFor(t, "the connections counted", func() bool { return h.Stats().ActiveConnections == n+1 })
	assert.Less(t, runtime.NumGoroutine()-before, n/5, "%d kept-alive connections, goroutines %d → %d", n, before, runtime.NumGoroutine())
}

// TestEventLoopIdleTimeoutNeverEarly: a kept-alive connection waiting for
// its next request is closed after the idle timeout, never before it.
func TestEventLoopIdleTimeoutNeverEarly(t *testing.T) {
	const idle = 300 * time.Millisecond
	tg := newTarget(t, "a", nil)
	h := configured(t, &HTTP{EventLoop: true}, forwardTo(t, upstreamOf(t, "web", tg)), Timeouts{Idle: idle})
	c, br := dialRaw(t, serve(t, h))
	_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	readResp(t, br, "GET")
	answered := time.Now()
	_, err = br.ReadByte()
	waited := time.Since(answered)
	assert.ErrorIs(t, err, io.EOF, "closed by the proxy")
	assert.GreaterOrEqual(t, waited, idle, "not before the idle timeout")
}

// TestEventLoopHeadInPieces: a request head that arrives in pieces is
// served (by the engine's goroutine, which the loop hands it to), and so
// is the next request on the connection.
func TestEventLoopHeadInPieces(t *testing.T) {
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
	h := configured(t, &HTTP{EventLoop: true}, forwardTo(t, upstreamOf(t, "web", tg)))
	c, br := dialRaw(t, serve(t, h))
	_, err := io.WriteString(c, "GET /first HTTP/1.1\r\nHo")
	require.NoError(t, err)
	// Not synchronisation: whichever way the pieces arrive (one read or
	// two), the answers must be the same.
	time.Sleep(20 * time.Millisecond)
	_, err = io.WriteString(c, "st: x\r\n\r\n")
	require.NoError(t, err)
	_, body := readResp(t, br, "GET")
	assert.Equal(t, "/first", body)
	_, err = io.WriteString(c, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	_, body = readResp(t, br, "GET")
	assert.Equal(t, "/second", body)
}

// TestEventLoopTargetByName: a target given by host name (not an IP
// address) is dialed by a goroutine for the loop, and its connection kept.
func TestEventLoopTargetByName(t *testing.T) {
	tg := newTarget(t, "a", nil)
	_, port, err := net.SplitHostPort(tg.addr())
	require.NoError(t, err)
	if _, err := net.LookupHost("localhost"); err != nil {
		t.Skip("localhost does not resolve here")
	}
	b, err := balancer.New(balancer.WithTargets(balancer.Target{ID: "a", Addr: "localhost:" + port, Weight: 1}))
	require.NoError(t, err)
	up := &Upstream{Name: "web", Balancer: b}
	h := configured(t, &HTTP{EventLoop: true}, forwardTo(t, up))
	c, br := dialRaw(t, serve(t, h))
	for range 3 {
		_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, body := readResp(t, br, "GET")
		if resp.StatusCode == http.StatusBadGateway {
			t.Skip("localhost resolves to an address the target does not listen on: " + body)
		}
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "a", body)
	}
	assert.Equal(t, int64(1), dialsOf(h, up), "one connection, kept")
}

// TestEventLoopBreakerWaits: a loop's request that needs a new connection
// to a target at its MaxConnsPerTarget waits for one to free up, as the
// engine's goroutines do, as one of at most MaxPendingRequests; one more
// is refused at once (503).
func TestEventLoopBreakerWaits(t *testing.T) {
	hold := make(chan struct{})
	arrived := make(chan struct{}, 2)
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-hold
		io.WriteString(w, "a")
	})
	up := upstreamOf(t, "web", tg)
	up.SetLimits(Limits{MaxConnsPerTarget: 1, MaxPendingRequests: 1})
	h := configured(t, &HTTP{EventLoop: true, Retry: Retry{Attempts: 1}}, forwardTo(t, up), Timeouts{Connect: time.Minute})
	addr := serve(t, h)
	codes := make(chan int, 2)
	ask := func() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			codes <- 0
			return
		}
		defer c.Close()
		fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			codes <- 0
			return
		}
		resp.Body.Close()
		codes <- resp.StatusCode
	}
	go ask()
	<-arrived // the first holds the only connection
	go ask()
	waitFor(t, "the second waiting for a connection", func() bool { return up.pending.Load() == 1 })
	c, br := dialRaw(t, addr)
	_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	resp, body := readResp(t, br, "GET")
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "a third is over MaxPendingRequests")
	assert.True(t, strings.HasPrefix(body, "503"), body)
	close(hold)
	assert.Equal(t, 200, <-codes)
	assert.Equal(t, 200, <-codes, "the waiting request got the connection")
	assert.Zero(t, up.pending.Load())
}

// TestEventLoopBreakerWaitEnds: a request waiting for a connection slot
// longer than the connect timeout is refused (503).
func TestEventLoopBreakerWaitEnds(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	arrived := make(chan struct{}, 2)
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-hold
	})
	up := upstreamOf(t, "web", tg)
	up.SetLimits(Limits{MaxConnsPerTarget: 1})
	h := configured(t, &HTTP{EventLoop: true, Retry: Retry{Attempts: 1}}, forwardTo(t, up), Timeouts{Connect: 200 * time.Millisecond, Response: time.Minute})
	addr := serve(t, h)
	c1, _ := dialRaw(t, addr)
	_, err := io.WriteString(c1, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	<-arrived
	c, br := dialRaw(t, addr)
	asked := time.Now()
	_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	resp, _ := readResp(t, br, "GET")
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.GreaterOrEqual(t, time.Since(asked), 200*time.Millisecond, "it waited the connect timeout")
	assert.Zero(t, up.pending.Load())
}

// TestEventLoopSlowReader: long bodies (a Content-Length one, spliced;
// a chunked one, its long chunks spliced) to a client that takes them a
// little at a time through a small receive buffer: the relay waits for
// the client and resumes, and every byte arrives in order.
func TestEventLoopSlowReader(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	sum := sha256.Sum256(big)
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		}
		for off := 0; off < len(big); off += 256 << 10 {
			w.Write(big[off : off+256<<10])
		}
	})
	h := configured(t, &HTTP{EventLoop: true}, forwardTo(t, upstreamOf(t, "web", tg)))
	addr := serve(t, h)
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
	br := bufio.NewReaderSize(c, 512)
	for _, q := range []string{"", "?chunked=1", ""} {
		_, err := io.WriteString(c, "GET /"+q+" HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		hash := sha256.New()
		buf := make([]byte, 1024)
		for {
			n, err := resp.Body.Read(buf)
			hash.Write(buf[:n])
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
		}
		assert.Equal(t, sum[:], hash.Sum(nil), "body %q", q)
	}
}

// TestEventLoopMixedTraffic: many clients at once, each a random mix
// (seeded) of what a loop serves and what it hands over — kept-alive GETs,
// pipelined GETs, HEADs, POSTs, long spliced and chunked bodies, targets
// closing their connection, clients leaving mid-body — get every answer
// whole and in order, and when they leave, the proxy holds no connection
// and no request.
func TestEventLoopMixedTraffic(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 200<<10)
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch {
		case strings.HasPrefix(r.URL.Path, "/big"):
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			w.Write(big)
		case strings.HasPrefix(r.URL.Path, "/chunked"):
			for range 4 {
				w.Write(big[:50<<10])
				w.(http.Flusher).Flush()
			}
		case strings.HasPrefix(r.URL.Path, "/close"):
			w.Header().Set("Connection", "close")
			fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, len(b))
		default:
			fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, len(b))
		}
	})
	h := configured(t, &HTTP{EventLoop: true}, forwardTo(t, upstreamOf(t, "web", tg)))
	addr := serve(t, h)
	const workers, ops = 12, 40
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			errs <- mixedClient(addr, rand.New(rand.NewPCG(uint64(w), 7)), ops, len(big))
		}()
	}
	for range workers {
		require.NoError(t, <-errs)
	}
	waitFor(t, "no connection and no request left", func() bool {
		st := h.Stats()
		return st.ActiveConnections == 0 && st.ActiveRequests == 0
	})
}

// mixedClient is one client of TestEventLoopMixedTraffic.
func mixedClient(addr string, rnd *rand.Rand, ops, bigLen int) error {
	var c net.Conn
	var br *bufio.Reader
	reconnect := func() error {
		if c != nil {
			c.Close()
		}
		var err error
		if c, err = net.Dial("tcp", addr); err != nil {
			return err
		}
		br = bufio.NewReader(c)
		return c.SetDeadline(time.Now().Add(20 * time.Second))
	}
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	if err := reconnect(); err != nil {
		return err
	}
	expect := func(method, want string) error {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || (want != "" && string(b) != want) {
			return fmt.Errorf("%s: status %d, body %.40q, want %q", method, resp.StatusCode, b, want)
		}
		if resp.Close {
			return reconnect()
		}
		return nil
	}
	for i := range ops {
		var err error
		p := fmt.Sprintf("/p%d", i)
		switch rnd.IntN(8) {
		case 0, 1: // a kept-alive GET
			if _, err = fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", p); err == nil {
				err = expect("GET", "GET "+p+" 0")
			}
		case 2: // three pipelined GETs
			if _, err = fmt.Fprintf(c, "GET %s/1 HTTP/1.1\r\nHost: x\r\n\r\nGET %s/2 HTTP/1.1\r\nHost: x\r\n\r\nHEAD %s/3 HTTP/1.1\r\nHost: x\r\n\r\n", p, p, p); err == nil {
				if err = expect("GET", "GET "+p+"/1 0"); err == nil {
					if err = expect("GET", "GET "+p+"/2 0"); err == nil {
						err = expect("HEAD", "")
					}
				}
			}
		case 3: // a POST: handed to the goroutines, the connection with it
			if _, err = fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", p); err == nil {
				err = expect("POST", "POST "+p+" 5")
			}
			if err == nil {
				err = reconnect() // back to a loop
			}
		case 4: // a long body, spliced
			if _, err = fmt.Fprintf(c, "GET /big%d HTTP/1.1\r\nHost: x\r\n\r\n", i); err == nil {
				resp, rerr := http.ReadResponse(br, nil)
				if err = rerr; err == nil {
					var n int64
					n, err = io.Copy(io.Discard, resp.Body)
					if err == nil && n != int64(bigLen) {
						err = fmt.Errorf("big body: %d bytes, want %d", n, bigLen)
					}
				}
			}
		case 5: // a chunked body
			if _, err = fmt.Fprintf(c, "GET /chunked%d HTTP/1.1\r\nHost: x\r\n\r\n", i); err == nil {
				resp, rerr := http.ReadResponse(br, nil)
				if err = rerr; err == nil {
					var n int64
					n, err = io.Copy(io.Discard, resp.Body)
					if err == nil && n != 200<<10 {
						err = fmt.Errorf("chunked body: %d bytes", n)
					}
				}
			}
		case 6: // the target closes its connection after answering
			if _, err = fmt.Fprintf(c, "GET /close%d HTTP/1.1\r\nHost: x\r\n\r\n", i); err == nil {
				err = expect("GET", fmt.Sprintf("GET /close%d 0", i))
			}
		case 7: // the client leaves in the middle of a long body
			if _, err = fmt.Fprintf(c, "GET /big%d HTTP/1.1\r\nHost: x\r\n\r\n", i); err == nil {
				if _, err = http.ReadResponse(br, nil); err == nil {
					err = reconnect()
				}
			}
		}
		if err != nil {
			return fmt.Errorf("op %d: %w", i, err)
		}
	}
	return nil
}
