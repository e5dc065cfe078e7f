package lb

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// echoTarget is a TCP target that answers each line with "<name> <line>".
type echoTarget struct {
	name  string
	ln    net.Listener
	addr  string
	wg    sync.WaitGroup
	mu    sync.Mutex // guards conns
	conns map[net.Conn]bool
	count atomic.Int64 // connections accepted
}

func newEchoTarget(t *testing.T, name string) *echoTarget {
	t.Helper()
	return newEchoTargetOn(t, name, "127.0.0.1:0")
}

// newEchoTargetOn is newEchoTarget listening on addr.
func newEchoTargetOn(t *testing.T, name, addr string) *echoTarget {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	e := &echoTarget{name: name, ln: ln, addr: ln.Addr().String(), conns: map[net.Conn]bool{}}
	e.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.count.Add(1)
			e.mu.Lock()
			e.conns[c] = true
			e.mu.Unlock()
			e.wg.Go(func() {
				defer func() {
					e.mu.Lock()
					delete(e.conns, c)
					e.mu.Unlock()
					c.Close()
				}()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := fmt.Fprintf(c, "%s %s", name, line); err != nil {
						return
					}
				}
			})
		}
	})
	t.Cleanup(e.stop)
	return e
}

// stop closes the listener and every connection.
func (e *echoTarget) stop() {
	e.ln.Close()
	e.mu.Lock()
	for c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// ask sends one line on c and returns the answer's target name.
func ask(t *testing.T, c net.Conn, line string) string {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err := fmt.Fprintf(c, "%s\n", line)
	require.NoError(t, err)
	got, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	name, rest, _ := strings.Cut(strings.TrimSuffix(got, "\n"), " ")
	require.Equal(t, line, rest)
	return name
}

// dialAsk opens a connection through addr, asks once and closes.
func dialAsk(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	require.NoError(t, err)
	defer c.Close()
	return ask(t, c, "hello")
}

// httpTarget is an HTTP target whose pages say its name.
type httpTarget struct {
	name string
	srv  *http.Server
	addr string
	done chan struct{}
}

func newHTTPTarget(t *testing.T, name string) *httpTarget {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	h := &httpTarget{name: name, addr: ln.Addr().String(), done: make(chan struct{})}
	h.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/session" {
			http.SetCookie(w, &http.Cookie{Name: "JSESSIONID", Value: name + "-session"})
		}
		w.Header().Set("X-Target", name)
		fmt.Fprintf(w, "%s %s xff=%s", name, r.URL.Path, r.Header.Get("X-Forwarded-For"))
	})}
	go func() { defer close(h.done); h.srv.Serve(ln) }()
	t.Cleanup(h.stop)
	return h
}

func (h *httpTarget) stop() {
	h.srv.Close()
	<-h.done
}

// udpEcho is a UDP target that answers each datagram with "<name> <data>".
type udpEcho struct {
	name string
	pc   net.PacketConn
	addr string
	done chan struct{}
}

func newUDPEcho(t *testing.T, name string) *udpEcho { return newUDPEchoOn(t, name, "127.0.0.1") }

// newUDPEchoOn is newUDPEcho on a given loopback host ("127.0.0.1", "[::1]").
func newUDPEchoOn(t *testing.T, name, host string) *udpEcho {
	t.Helper()
	pc, err := net.ListenPacket("udp", host+":0")
	require.NoError(t, err)
	u := &udpEcho{name: name, pc: pc, addr: pc.LocalAddr().String(), done: make(chan struct{})}
	go func() {
		defer close(u.done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte(name+" "), buf[:n]...), from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-u.done })
	return u
}

// udpAsk sends a datagram on c and returns the answering target's name.
func udpAsk(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err := c.Write([]byte(msg))
	require.NoError(t, err)
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	require.NoError(t, err)
	name, rest, _ := strings.Cut(string(buf[:n]), " ")
	require.Equal(t, msg, rest)
	return name
}

// startLB builds and starts a load balancer closed at the end of the test.
func startLB(t *testing.T, opts ...Option) *LoadBalancer {
	t.Helper()
	l, err := New(append([]Option{WithLogger(quietLog)}, opts...)...)
	require.NoError(t, err)
	require.NoError(t, l.Start())
	t.Cleanup(func() {
		if t.Failed() { // what the load balancer saw, to explain the failure
			st := l.Stats()
			for _, ls := range st.Listeners {
				t.Logf("listener %s: tcp %+v udp %+v http %+v", ls.Name, ls.TCP, ls.UDP, ls.HTTP)
			}
			t.Logf("flows: %+v", st.Flows)
			t.Logf("diagnosis:\n%s", l.Diagnose(Query{}))
		}
		l.Close()
	})
	return l
}

// addr returns a listener's bound address.
func addr(t *testing.T, l *LoadBalancer, name string) string {
	t.Helper()
	a, ok := l.Addr(name)
	require.True(t, ok, "listener %s", name)
	return a.String()
}

// waitServing waits until the group has n targets receiving traffic.
func waitServing(t *testing.T, l *LoadBalancer, group string, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, g := range l.Stats().Groups {
			if g.Name == group {
				s := 0
				for _, x := range g.Targets {
					if x.Serving {
						s++
					}
				}
				return s == n
			}
		}
		return false
	}, 10*time.Second, 5*time.Millisecond, "group %s never had %d serving targets", group, n)
}

// testCert makes a self-signed certificate for the names.
func testCert(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// httpGet fetches url with client and returns the body's first word (the
// target's name) and the status.
func httpGet(t *testing.T, client *http.Client, url string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	name, _, _ := strings.Cut(string(b), " ")
	return name, resp.StatusCode
}

// sameTCPPort listens on 127.0.0.1 and [::1] on one port number: two hosts
// with the same health port, as a target group's health check expects.
func sameTCPPort(t *testing.T) (v4, v6 net.Listener, port int) {
	t.Helper()
	for range 50 {
		a, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		p := a.Addr().(*net.TCPAddr).Port
		b, err := net.Listen("tcp", fmt.Sprintf("[::1]:%d", p))
		if err != nil {
			a.Close()
			continue
		}
		for _, ln := range []net.Listener{a, b} {
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, b, p
	}
	t.Fatal("no port free on both 127.0.0.1 and ::1")
	return nil, nil, 0
}
