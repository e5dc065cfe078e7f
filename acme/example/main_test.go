package main

import (
	"context"
	"crypto/tls"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/lbkit/lbkit/acme"
	"github.com/lbkit/lbkit/acme/internal/pebbletest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).loop"),
	)
}

// lockedWriter is an io.Writer the test reads while run writes.
type lockedWriter struct {
	mu   sync.Mutex // guards b and ch
	b    strings.Builder
	ch   chan struct{}
	once sync.Once
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	w.once.Do(func() { close(w.ch) })
	return len(p), nil
}

// TestRun runs the example against Pebble on loopback: it obtains a
// certificate, prints its status, and serves a handshake with it.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs pebble")
	}
	p := pebbletest.New(t)
	cfg := acme.Config{Domains: []string{"shop.lbkit.test"}, Email: "ops@lbkit.test", CA: p.Directory, TrustedRoots: p.Roots, Storage: t.TempDir()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lockedWriter{ch: make(chan struct{})}
	// Pebble starts (in the test's goroutine) once the listener serves,
	// told its port; run waits for it before it asks for certificates.
	addrs := make(chan string, 1)
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, cfg, "127.0.0.1:0", func(addr string) {
			addrs <- addr
			<-started
		}, out)
	}()
	var addr string
	select {
	case addr = <-addrs:
	case err := <-done:
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	p.Start(t, n)
	close(started)
	select {
	case <-out.ch:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(3 * time.Minute):
		t.Fatal("no certificate in 3 minutes")
	}
	out.mu.Lock()
	text := out.b.String()
	out.mu.Unlock()
	require.Regexp(t, regexp.MustCompile(`^\[shop\.lbkit\.test\]: issued by "Pebble Intermediate CA [0-9a-f]+", expires \d{4}-\d\d-\d\d, renewed after \d{4}-\d\d-\d\d\n$`), text)

	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "shop.lbkit.test", RootCAs: p.IssuerRoots(t)})
	require.NoError(t, err)
	c.Close()
	cancel()
	require.NoError(t, <-done)
}
