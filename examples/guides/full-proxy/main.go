package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
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
	// Targets on 127.0.0.1 that report the connection they see.
	tcpTarget, err := startTCPTarget()
	if err != nil {
		return err
	}
	defer tcpTarget.Close()
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "peer %s, X-Forwarded-For %s\n", r.RemoteAddr, r.Header.Get("X-Forwarded-For"))
	})}
	go web.Serve(httpLn)
	defer web.Close()
	udpTarget, err := startUDPTarget()
	if err != nil {
		return err
	}
	defer udpTarget.Close()

	// Listeners on ::1, target groups on 127.0.0.1.
	l, err := lb.New(
		lb.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		lb.WithListener("tcp", lb.TCP, "[::1]:0", lb.WithForwardTo("tcp")),
		lb.WithListener("http", lb.HTTP, "[::1]:0", lb.WithForwardTo("http")),
		lb.WithListener("udp", lb.UDP, "[::1]:0", lb.WithForwardTo("udp")),
		lb.WithTargetGroup("tcp", lb.TCP, lb.WithTarget(tcpTarget.Addr().String()), lb.WithProxyProtocol(1), lb.WithoutHealthCheck()),
		lb.WithTargetGroup("http", lb.HTTP, lb.WithTarget(httpLn.Addr().String()), lb.WithoutHealthCheck()),
		lb.WithTargetGroup("udp", lb.UDP, lb.WithTarget(udpTarget.LocalAddr().String()), lb.WithoutHealthCheck()),
	)
	if err != nil {
		return err
	}
	if err := l.Start(); err != nil {
		return err
	}
	defer l.Close()
	addr := func(name string) string { a, _ := l.Addr(name); return a.String() }

	// TCP: two connections, and the client's address in a PROXY header.
	c, err := net.Dial("tcp", addr("tcp"))
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintln(c, "hello")
	report, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	peer, local, header := parseReport(report)
	fmt.Fprintln(out, "TCP:")
	fmt.Fprintf(out, "  client's connection:  %s → %s (client to lbkit)\n", c.LocalAddr(), c.RemoteAddr())
	fmt.Fprintf(out, "  target's connection:  %s → %s (lbkit to target)\n", peer, local)
	fmt.Fprintf(out, "  the target answers %s, a socket of lbkit, never the client\n", peer)
	fmt.Fprintf(out, "  the PROXY header tells the target the client: %s\n", header)

	// HTTP: the same, with X-Forwarded-For.
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://" + addr("http") + "/")
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "HTTP:")
	fmt.Fprintf(out, "  the target sees: %s", body)

	// UDP: a socket per client flow.
	uc, err := net.Dial("udp", addr("udp"))
	if err != nil {
		return err
	}
	defer uc.Close()
	_ = uc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := uc.Write([]byte("hello")); err != nil {
		return err
	}
	buf := make([]byte, 512)
	n, err := uc.Read(buf)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "UDP:")
	fmt.Fprintf(out, "  client's datagrams:   %s → %s\n", uc.LocalAddr(), uc.RemoteAddr())
	fmt.Fprintf(out, "  the target sees them from %s, and answers there\n", buf[:n])
	fmt.Fprintln(out, "Client and target are the same host here, which a balancer that preserves the source address cannot allow.")

	if !serve {
		return nil
	}
	_, tcpPort, _ := net.SplitHostPort(addr("tcp"))
	fmt.Fprintf(out, "\nServing until Ctrl-C. Try:\n  curl -g http://%s/\n  echo hello | nc -q1 ::1 %s\n", addr("http"), tcpPort)
	<-ctx.Done()
	return nil
}

// parseReport splits the TCP target's line "peer P local L header H".
func parseReport(s string) (peer, local, header string) {
	f := strings.SplitN(strings.TrimSpace(s), " ", 6)
	if len(f) < 6 {
		return s, "", ""
	}
	return f[1], f[3], f[5]
}

// startTCPTarget starts a target that reads the PROXY protocol v1 line
// lbkit sends first, then answers the client's first line with
// "peer <its peer> local <its own address> header <the PROXY line>".
func startTCPTarget() (net.Listener, error) {
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
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				r := bufio.NewReader(c)
				header, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if _, err := r.ReadString('\n'); err != nil {
					return
				}
				fmt.Fprintf(c, "peer %s local %s header %s\n", c.RemoteAddr(), c.LocalAddr(), strings.TrimSpace(header))
			}()
		}
	}()
	return ln, nil
}

// startUDPTarget starts a target that answers each datagram with the
// address it came from.
func startUDPTarget() (net.PacketConn, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(from.String()), from)
		}
	}()
	return pc, nil
}
