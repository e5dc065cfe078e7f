package pebbletest

import (
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestServer: a Pebble started by New and Start serves its ACME directory
// over TLS that its roots verify, and Stop leaves no goroutine behind.
func TestServer(t *testing.T) {
	p := New(t)
	p.Start(t, freePort(t)) // the TLS-ALPN-01 port: nothing is validated here
	defer p.Stop()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Roots}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(p.Directory)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", p.Directory, resp.Status)
	}
}
