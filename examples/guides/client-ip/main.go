package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lbkit/lbkit/lb"
)

func main() {
	serve := flag.Bool("serve", false, "keep serving after the demonstration, until Ctrl-C")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *serve); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, out io.Writer, serve bool) error {
	// An HTTP target that says what it sees.
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "peer=%s X-Forwarded-For=%q X-Forwarded-Proto=%q\n", peer, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"))
	})}
	go app.Serve(appLn)
	defer app.Close()
	// A TCP target that reads the PROXY protocol header lbkit sends.
	raw, err := startProxyProtocolTarget()
	if err != nil {
		return err
	}
	defer raw.Close()

	l, err := lb.New(
		lb.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		// L7: X-Forwarded-For. "web" trusts nobody in front of it;
		// "web-behind-cdn" trusts 127.0.0.1 (standing for a CDN).
		lb.WithListener("web", lb.HTTP, "127.0.0.1:0", lb.WithForwardTo("app")),
		lb.WithListener("web-behind-cdn", lb.HTTP, "127.0.0.1:0", lb.WithForwardTo("app"), lb.WithTrustedProxies("127.0.0.1")),
		lb.WithTargetGroup("app", lb.HTTP, lb.WithTarget(appLn.Addr().String()), lb.WithoutHealthCheck()),
		// L4: the PROXY protocol to the targets, version 1 or 2.
		lb.WithListener("tcp-v1", lb.TCP, "127.0.0.1:0", lb.WithForwardTo("raw-v1")),
		lb.WithListener("tcp-v2", lb.TCP, "127.0.0.1:0", lb.WithForwardTo("raw-v2")),
		lb.WithTargetGroup("raw-v1", lb.TCP, lb.WithTarget(raw.Addr().String()), lb.WithProxyProtocol(1), lb.WithoutHealthCheck()),
		lb.WithTargetGroup("raw-v2", lb.TCP, lb.WithTarget(raw.Addr().String()), lb.WithProxyProtocol(2), lb.WithoutHealthCheck()),
		// L4: the PROXY protocol from a balancer in front of lbkit.
		// "tcp-behind-lb" trusts 127.0.0.1; "tcp-strict" trusts only ::1,
		// so a PROXY header from 127.0.0.1 is refused.
		lb.WithListener("tcp-behind-lb", lb.TCP, "127.0.0.1:0", lb.WithForwardTo("raw-v2"), lb.WithTrustedProxies("127.0.0.1")),
		lb.WithListener("tcp-strict", lb.TCP, "127.0.0.1:0", lb.WithForwardTo("raw-v2"), lb.WithTrustedProxies("::1")),
	)
	if err != nil {
		return err
	}
	if err := l.Start(); err != nil {
		return err
	}
	defer l.Close()
	addr := func(name string) string { a, _ := l.Addr(name); return a.String() }
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	fmt.Fprintln(out, "L7, X-Forwarded-For:")
	for _, c := range []struct{ what, listener, xff string }{
		{"direct client", "web", ""},
		{"client claiming X-Forwarded-For: 203.0.113.9", "web", "203.0.113.9"},
		{"via a trusted proxy that says 203.0.113.9", "web-behind-cdn", "203.0.113.9"},
	} {
		got, err := httpGet(client, "http://"+addr(c.listener)+"/", c.xff)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "  %-44s → target sees %s\n", c.what, got)
	}

	fmt.Fprintln(out, "L4, PROXY protocol to the target:")
	for _, listener := range []string{"tcp-v1", "tcp-v2"} {
		c, err := net.Dial("tcp", addr(listener))
		if err != nil {
			return err
		}
		got, err := ask(c, nil)
		c.Close()
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "  %-8s client %-17s → target sees %s\n", listener+":", c.LocalAddr(), got)
	}

	fmt.Fprintln(out, "L4, PROXY protocol from a balancer in front:")
	claimed := []byte("PROXY TCP4 198.51.100.7 192.0.2.10 40000 443\r\n")
	for _, listener := range []string{"tcp-behind-lb", "tcp-strict"} {
		c, err := net.Dial("tcp", addr(listener))
		if err != nil {
			return err
		}
		got, err := ask(c, claimed)
		c.Close()
		if err != nil {
			got = "nothing: " + errText(err)
		}
		fmt.Fprintf(out, "  %-14s 127.0.0.1 sends a PROXY header for 198.51.100.7 → target sees %s\n", listener+":", got)
	}
	for _, ls := range l.Stats().Listeners {
		if ls.Name == "tcp-strict" {
			fmt.Fprintf(out, "  tcp-strict: TCPStats.ProxyHeaderUntrusted = %d\n", ls.TCP.ProxyHeaderUntrusted)
		}
	}

	if !serve {
		return nil
	}
	fmt.Fprintf(out, "\nServing until Ctrl-C. Try:\n")
	fmt.Fprintf(out, "  curl -H 'X-Forwarded-For: 203.0.113.9' http://%s/\n", addr("web"))
	fmt.Fprintf(out, "  curl -H 'X-Forwarded-For: 203.0.113.9' http://%s/\n", addr("web-behind-cdn"))
	<-ctx.Done()
	return nil
}

// httpGet fetches url, with an X-Forwarded-For header if xff is set, and
// returns the body.
func httpGet(c *http.Client, url, xff string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

// ask sends prefix (if any) and a line on c and returns the answer line.
func ask(c net.Conn, prefix []byte) (string, error) {
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return "", err
	}
	if _, err := c.Write(append(prefix, "hello\n"...)); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func errText(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// startProxyProtocolTarget starts a TCP target that reads the PROXY protocol
// header at the start of each connection, then answers the first line with
// what it learned.
func startProxyProtocolTarget() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				version, client, err := readProxyHeader(br)
				if err != nil {
					fmt.Fprintf(c, "a bad PROXY header: %v\n", err)
					return
				}
				if _, err := br.ReadString('\n'); err != nil {
					return
				}
				peer, _, _ := net.SplitHostPort(c.RemoteAddr().String())
				fmt.Fprintf(c, "peer=%s PROXY v%d client=%s\n", peer, version, client)
			}()
		}
	}()
	return ln, nil
}

// proxyV2Sig is the PROXY protocol v2 signature.
var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// readProxyHeader reads a PROXY protocol header, v1 (a text line) or v2
// (binary), and returns its version and the client's address. It handles
// what lbkit sends, TCP over IPv4 or IPv6; a real target would use a
// library such as github.com/pires/go-proxyproto.
func readProxyHeader(br *bufio.Reader) (int, netip.AddrPort, error) {
	sig, err := br.Peek(len(proxyV2Sig))
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	if !bytes.Equal(sig, proxyV2Sig) {
		// v1: "PROXY TCP4 <src> <dst> <sport> <dport>\r\n"
		line, err := br.ReadString('\n')
		if err != nil {
			return 0, netip.AddrPort{}, err
		}
		f := strings.Fields(line)
		if len(f) != 6 || f[0] != "PROXY" {
			return 0, netip.AddrPort{}, fmt.Errorf("v1 line %q", line)
		}
		ap, err := netip.ParseAddrPort(net.JoinHostPort(f[2], f[4]))
		return 1, ap, err
	}
	// v2: signature, version and command, family, length, addresses.
	var hdr [16]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return 0, netip.AddrPort{}, err
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[14:]))
	if _, err := io.ReadFull(br, body); err != nil {
		return 0, netip.AddrPort{}, err
	}
	switch fam := hdr[13]; {
	case fam == 0x11 && len(body) >= 12: // TCP over IPv4
		a, _ := netip.AddrFromSlice(body[0:4])
		return 2, netip.AddrPortFrom(a, binary.BigEndian.Uint16(body[8:])), nil
	case fam == 0x21 && len(body) >= 36: // TCP over IPv6
		a, _ := netip.AddrFromSlice(body[0:16])
		return 2, netip.AddrPortFrom(a, binary.BigEndian.Uint16(body[32:])), nil
	}
	return 0, netip.AddrPort{}, errors.New("v2 header of another family")
}
