package hostile

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// world is what the parent runs for a child load balancer: its targets and
// its certificate.
type world struct {
	tcpTarget, httpTarget, udpTarget string
	certPEM, keyPEM                  string
	udp                              *udpEcho
}

// newWorld starts the targets: a TCP echo, an HTTP server answering "ok",
// and a UDP echo. They stop when the test ends.
func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{}
	w.certPEM, w.keyPEM = selfSigned(t)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	w.tcpTarget = ln.Addr().String()
	var conns sync.WaitGroup
	accepting := make(chan struct{})
	go func() {
		defer close(accepting)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	}()
	t.Cleanup(func() { ln.Close(); <-accepting; conns.Wait() })

	hln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	w.httpTarget = hln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { io.WriteString(rw, "ok") }),
		ReadHeaderTimeout: time.Minute}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(hln) }()
	t.Cleanup(func() { srv.Close(); <-served })

	w.udp = newUDPEcho(t)
	w.udpTarget = w.udp.addr()
	return w
}

// udpEcho is a UDP echo target that remembers from which addresses (the
// load balancer's sockets) it received datagrams marked "keep:".
type udpEcho struct {
	conn *net.UDPConn
	mu   sync.Mutex
	keep map[string]map[netip.AddrPort]bool // mark → the load balancer's sockets it came from
	done chan struct{}
}

func newUDPEcho(t *testing.T) *udpEcho {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	u := &udpEcho{conn: pc.(*net.UDPConn), keep: map[string]map[netip.AddrPort]bool{}, done: make(chan struct{})}
	_ = u.conn.SetReadBuffer(4 << 20)
	go func() {
		defer close(u.done)
		buf := make([]byte, 2048)
		for {
			n, from, err := u.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if mark, ok := strings.CutPrefix(string(buf[:n]), "keep:"); ok {
				mark, _, _ = strings.Cut(mark, ":")
				u.mu.Lock()
				if u.keep[mark] == nil {
					u.keep[mark] = map[netip.AddrPort]bool{}
				}
				u.keep[mark][from] = true
				u.mu.Unlock()
			}
			_, _ = u.conn.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() { u.conn.Close(); <-u.done })
	return u
}

func (u *udpEcho) addr() string { return u.conn.LocalAddr().String() }

// sockets returns how many sockets of the load balancer datagrams marked
// mark came from: one as long as the client's flow was never evicted or
// expired and made again.
func (u *udpEcho) sockets(mark string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.keep[mark])
}

// selfSigned returns a certificate and key for localhost, in PEM.
func selfSigned(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
}

// clientTLS is the clients' TLS configuration: the child's certificate is
// self-signed.
var clientTLS = &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"} //nolint:gosec // a test's own certificate

// dialer dials from a chosen loopback address (empty: the kernel's
// choice, 127.0.0.1).
func dialer(from string) *net.Dialer {
	d := &net.Dialer{Timeout: 2 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	return d
}

// echoOnce opens a connection to a TCP (tls: TLS) echo listener, sends a
// line and reads it back, within 2 s.
func echoOnce(addr, from string, useTLS bool) error {
	c, err := dialer(from).Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if useTLS {
		tc := tls.Client(c, clientTLS)
		if err := tc.Handshake(); err != nil {
			return err
		}
		c = tc
	}
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return fmt.Errorf("echo answered %q", line)
	}
	return nil
}

// httpClient makes requests from a chosen loopback address, each on a new
// connection (so that every request goes through accept), within 2 s.
func httpClient(from string) *http.Client {
	return &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DialContext:       dialer(from).DialContext,
			TLSClientConfig:   clientTLS,
			DisableKeepAlives: true,
		},
	}
}

// getOnce fetches url and checks for the target's "ok".
func getOnce(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(b) != "ok" {
		return fmt.Errorf("status %d, body %q", resp.StatusCode, b)
	}
	return nil
}

// udpClient is a UDP client socket on a chosen loopback address.
type udpClient struct {
	conn *net.UDPConn
	n    int
}

func newUDPClient(t *testing.T, addr, from string) *udpClient {
	t.Helper()
	var laddr *net.UDPAddr
	if from != "" {
		laddr = &net.UDPAddr{IP: net.ParseIP(from)}
	}
	raddr, err := net.ResolveUDPAddr("udp", addr)
	require.NoError(t, err)
	c, err := net.DialUDP("udp", laddr, raddr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &udpClient{conn: c}
}

// ask sends msg and waits up to wait for it to come back.
func (u *udpClient) ask(msg string, wait time.Duration) error {
	u.n++
	msg = fmt.Sprintf("%s:%d", msg, u.n)
	if _, err := u.conn.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, 2048)
	deadline := time.Now().Add(wait)
	for {
		_ = u.conn.SetReadDeadline(deadline)
		n, err := u.conn.Read(buf)
		if err != nil {
			return err
		}
		if string(buf[:n]) == msg {
			return nil
		}
		// An answer to an earlier, late request: read on.
	}
}

// probe checks one listener of a child once, as a client from 127.0.0.1
// would use it.
func probe(c *child, name string) error {
	addr := c.addrs[name]
	switch name {
	case "tcp":
		return echoOnce(addr, "", false)
	case "tls":
		return echoOnce(addr, "", true)
	case "http", "httploop":
		return getOnce(httpClient(""), "http://"+addr+"/")
	case "https":
		return getOnce(httpClient(""), "https://"+addr+"/")
	case "udp":
		raddr, _ := net.ResolveUDPAddr("udp", addr)
		conn, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			return err
		}
		defer conn.Close()
		return (&udpClient{conn: conn}).ask("probe", time.Second)
	}
	return fmt.Errorf("no listener %q", name)
}

// serveAll checks that every listener of c serves, each within d: tried
// again and again until it answers or d passes.
func serveAll(t *testing.T, c *child, d time.Duration) {
	t.Helper()
	for _, name := range listenerNames {
		deadline := time.Now().Add(d)
		for {
			err := probe(c, name)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("listener %s does not serve %v after the attack: %v\nreport: %+v", name, d, err, c.report())
			}
			time.Sleep(50 * time.Millisecond) // the next try, not synchronisation
		}
	}
}
