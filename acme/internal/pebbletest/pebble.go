package pebbletest

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Tests run Let's Encrypt's Pebble, a real ACME server, built from
// the module cache (it is a tool of this module: go.mod's tool line), on
// loopback. Its validation authority resolves every name to 127.0.0.1
// through a DNS server in the test (pebble -dnsserver), and validates
// TLS-ALPN-01 on the port of the load balancer's listener, written into
// its configuration.

var (
	pebbleOnce sync.Once
	pebbleBin  string
	pebbleErr  error
	pebbleDir  string // pebble's module directory (its test certificates)
)

// buildPebble builds pebble once per test binary, into dir.
func buildPebble(t testing.TB) (bin, modDir string) {
	t.Helper()
	pebbleOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			pebbleErr = fmt.Errorf("no go command to build pebble: %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "lbkit-pebble-")
		if err != nil {
			pebbleErr = err
			return
		}
		pebbleBin = filepath.Join(dir, "pebble")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goBin, "build", "-o", pebbleBin, "github.com/letsencrypt/pebble/v2/cmd/pebble")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			pebbleErr = fmt.Errorf("go build pebble: %v\n%s", err, out)
			return
		}
		out, err := exec.CommandContext(ctx, goBin, "list", "-m", "-f", "{{.Dir}}", "github.com/letsencrypt/pebble/v2").Output()
		if err != nil {
			pebbleErr = fmt.Errorf("go list pebble: %v", err)
			return
		}
		pebbleDir = strings.TrimSpace(string(out))
	})
	if pebbleErr != nil {
		t.Skipf("pebble is not available: %v", pebbleErr)
	}
	return pebbleBin, pebbleDir
}

// dnsServer answers every A question with 127.0.0.1 and every other one
// with no answer, over TCP (pebble's validation authority asks over TCP)
// on a port of 127.0.0.1, until the test ends.
func dnsServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns
	conns := map[net.Conn]struct{}{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				serveDNS(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// serveDNS answers the length-prefixed DNS messages of one TCP connection.
func serveDNS(c net.Conn) {
	var lenb [2]byte
	for {
		if _, err := io.ReadFull(c, lenb[:]); err != nil {
			return
		}
		buf := make([]byte, int(lenb[0])<<8|int(lenb[1]))
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf)
		if err != nil {
			return
		}
		q, err := p.Question()
		if err != nil {
			return
		}
		b := dnsmessage.NewBuilder(make([]byte, 2, 512), dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
		_ = b.StartQuestions()
		_ = b.Question(q)
		_ = b.StartAnswers()
		if q.Type == dnsmessage.TypeA {
			_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}, dnsmessage.AResource{A: [4]byte{127, 0, 0, 1}})
		}
		msg, err := b.Finish()
		if err != nil {
			return
		}
		n := len(msg) - 2
		msg[0], msg[1] = byte(n>>8), byte(n)
		if _, err := c.Write(msg); err != nil {
			return
		}
	}
}

// freePort returns a loopback port nothing listens on now. Only pebble's
// own addresses are picked this way (its configuration file needs numbers,
// and it cannot report what it bound); everything of lbkit binds port 0.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Server is a running Pebble.
type Server struct {
	cmd       *exec.Cmd
	exited    chan struct{}
	Directory string         // the ACME directory URL
	Roots     *x509.CertPool // verifies the ACME endpoint (pebble's minica)
	mgmt      string         // the management endpoint
	bin, mod  string         // the binary, pebble's module directory
	listen    string
	mu        sync.Mutex // guards logs
	logs      strings.Builder
}

// New prepares a Pebble: it is built, its addresses are chosen (so that
// Directory is known before it runs, for a client made first), and its
// endpoint's roots are read. Start runs it.
func New(t testing.TB) *Server {
	t.Helper()
	bin, mod := buildPebble(t)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := &Server{exited: make(chan struct{}), bin: bin, mod: mod, listen: listen,
		Directory: "https://" + listen + "/dir", mgmt: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	pem, err := os.ReadFile(filepath.Join(mod, "test/certs/pebble.minica.pem"))
	if err != nil {
		t.Fatal(err)
	}
	p.Roots = x509.NewCertPool()
	p.Roots.AppendCertsFromPEM(pem)
	return p
}

// Start runs Pebble, whose validation authority checks TLS-ALPN-01 at
// tlsPort of 127.0.0.1 for every name, until the test ends (or Stop).
func (p *Server) Start(t testing.TB, tlsPort int) {
	t.Helper()
	bin, mod, listen, mgmt := p.bin, p.mod, p.listen, p.mgmt
	dns := dnsServer(t)
	dir := t.TempDir()
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    filepath.Join(mod, "test/certs/localhost/cert.pem"),
		"privateKey":                     filepath.Join(mod, "test/certs/localhost/key.pem"),
		"httpPort":                       freePort(t), // unused: only TLS-ALPN-01 is offered by lbkit
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
	}}
	b, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "-config", cfgPath, "-dnsserver", dns)
	p.cmd.Env = append(os.Environ(),
		"PEBBLE_VA_NOSLEEP=1",      // validate at once
		"PEBBLE_WFE_NONCEREJECT=0", // no random bad nonces: the test is about lbkit
		"PEBBLE_AUTHZREUSE=0",      // a renewal validates again
	)
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(out)
		once := false
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if !once && strings.Contains(line, "Listening on") {
				once = true
				close(ready)
			}
		}
		_ = p.cmd.Wait()
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("pebble's log:\n%s", p.log())
		}
	})
	select {
	case <-ready:
	case <-p.exited:
		t.Fatalf("pebble exited:\n%s", p.log())
	case <-time.After(time.Minute):
		t.Fatalf("pebble did not start in a minute:\n%s", p.log())
	}
	// Pebble says it listens just before it does: its ports are dialed
	// until they accept (bounded), the one wait of these tests that is a
	// poll, as there is nothing to wait on.
	for _, addr := range []string{listen, mgmt} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pebble does not accept on %s: %v\n%s", addr, err, p.log())
			}
			select {
			case <-p.exited:
				t.Fatalf("pebble exited:\n%s", p.log())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

func (p *Server) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// Stop kills pebble and waits for it: the CA becomes unreachable.
func (p *Server) Stop() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// IssuerRoots returns the roots that verify the certificates pebble
// issues, from its management endpoint (a new root each run).
func (p *Server) IssuerRoots(t testing.TB) *x509.CertPool {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Roots}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get("https://" + p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /roots/0: %d %v", resp.StatusCode, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatal("GET /roots/0: no certificate")
	}
	return pool
}
