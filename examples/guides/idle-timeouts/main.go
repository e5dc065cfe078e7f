package main

import (
	"bufio"
	"context"
	"errors"
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

// The timeouts of the demonstration, short so that it ends quickly. The
// defaults are 350 s (TCP), 120 s (UDP) and 60 s (HTTP keep-alive).
const (
	tcpIdle  = 3 * time.Second
	httpIdle = 1 * time.Second
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
	echo, err := startEcho()
	if err != nil {
		return err
	}
	defer echo.close()
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello\n") })}
	webLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go web.Serve(webLn)
	defer web.Close()

	l, err := lb.New(
		lb.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		lb.WithListener("tcp", lb.TCP, "127.0.0.1:0", lb.WithForwardTo("echo"), lb.WithIdleTimeout(tcpIdle)),
		lb.WithListener("web", lb.HTTP, "127.0.0.1:0", lb.WithForwardTo("web"), lb.WithIdleTimeout(httpIdle)),
		lb.WithTargetGroup("echo", lb.TCP, lb.WithTarget(echo.addr()), lb.WithoutHealthCheck()),
		lb.WithTargetGroup("web", lb.HTTP, lb.WithTarget(webLn.Addr().String()), lb.WithoutHealthCheck()),
	)
	if err != nil {
		return err
	}
	if err := l.Start(); err != nil {
		return err
	}
	defer l.Close()
	tcpAddr, _ := l.Addr("tcp")
	webAddr, _ := l.Addr("web")

	// 1. Two TCP connections through the same listener: one quiet, one
	// whose client sends a TCP keepalive probe every second.
	quiet, err := (&net.Dialer{KeepAlive: -1}).Dial("tcp", tcpAddr.String())
	if err != nil {
		return err
	}
	defer quiet.Close()
	probing, err := (&net.Dialer{KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: time.Second, Interval: time.Second, Count: 5,
	}}).Dial("tcp", tcpAddr.String())
	if err != nil {
		return err
	}
	defer probing.Close()
	for _, c := range []net.Conn{quiet, probing} {
		if _, err := ask(c, "hello"); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "TCP listener idle timeout %s; two connections sent one line each, then went quiet\n", tcpIdle)

	// The quiet one is reset when its idle timeout passes: a read
	// waiting on it fails with "connection reset by peer".
	start := time.Now()
	_ = quiet.SetReadDeadline(time.Now().Add(tcpIdle + 10*time.Second))
	_, err = quiet.Read(make([]byte, 1))
	fmt.Fprintf(out, "quiet connection:   after %s idle: %v (reset: %v)\n", roundDown(time.Since(start)), errText(err), errors.Is(err, syscall.ECONNRESET))
	fmt.Fprintf(out, "the target's side:  %v\n", errText(echo.waitEnd()))

	// The probing one is just as quiet, but its keepalive probes count as
	// activity: waiting on it for twice the idle timeout brings no reset,
	// only the read deadline; then it still works.
	_ = probing.SetReadDeadline(start.Add(2 * tcpIdle))
	_, err = probing.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return fmt.Errorf("the probing connection ended: %v", err)
	}
	answer, err := ask(probing, "still there?")
	fmt.Fprintf(out, "probing connection: after %s idle: answer %q, error %v\n", roundDown(time.Since(start)), answer, err)

	ts := l.Stats().Listeners[0].TCP
	fmt.Fprintf(out, "TCPStats.IdleResets: %d\n", ts.IdleResets)

	// 2. An HTTP keep-alive connection idle past the listener's idle
	// timeout is closed, cleanly: the client reads end of stream.
	hc, err := net.Dial("tcp", webAddr.String())
	if err != nil {
		return err
	}
	defer hc.Close()
	fmt.Fprintf(hc, "GET / HTTP/1.1\r\nHost: demo\r\n\r\n")
	br := bufio.NewReader(hc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	start = time.Now()
	_ = hc.SetReadDeadline(time.Now().Add(httpIdle + 10*time.Second))
	_, err = br.ReadByte()
	fmt.Fprintf(out, "HTTP listener idle timeout %s; keep-alive connection after one request: %s, then after %s idle: %v\n",
		httpIdle, resp.Status, roundDown(time.Since(start)), errText(err))

	if !serve {
		return nil
	}
	th, tp, _ := net.SplitHostPort(tcpAddr.String())
	fmt.Fprintf(out, "\nServing until Ctrl-C. Try:\n")
	fmt.Fprintf(out, "  nc %s %s        # type a line, wait %s: nc ends with the reset\n", th, tp, tcpIdle)
	fmt.Fprintf(out, "  curl -v http://%s/ http://%s/   # one connection, two requests\n", webAddr, webAddr)
	<-ctx.Done()
	return nil
}

// ask sends a line on c and returns the answer line.
func ask(c net.Conn, line string) (string, error) {
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return "", err
	}
	if _, err := fmt.Fprintf(c, "%s\n", line); err != nil {
		return "", err
	}
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	return strings.TrimSpace(string(buf[:n])), err
}

// errText shortens a network error to its last part, e.g.
// "connection reset by peer" or "EOF".
func errText(err error) string {
	if err == nil {
		return "no error"
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// roundDown rounds d down to whole seconds, for a stable printout.
func roundDown(d time.Duration) string {
	return fmt.Sprintf("%ds+", int(d/time.Second))
}

// echoServer is a TCP target that answers every line with "echo: <line>"
// and reports how each connection ended.
type echoServer struct {
	ln   net.Listener
	ends chan error
}

func startEcho() (*echoServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e := &echoServer{ln: ln, ends: make(chan error, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						e.ends <- err
						return
					}
					fmt.Fprintf(c, "echo: %s", line)
				}
			}()
		}
	}()
	return e, nil
}

func (e *echoServer) addr() string { return e.ln.Addr().String() }

// waitEnd returns how the next connection to end ended, from the target's
// side.
func (e *echoServer) waitEnd() error {
	select {
	case err := <-e.ends:
		return err
	case <-time.After(10 * time.Second):
		return errors.New("no connection ended within 10s")
	}
}

func (e *echoServer) close() { e.ln.Close() }
