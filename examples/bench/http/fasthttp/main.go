// Command fasthttp is the peer benchmark's fasthttp reverse proxy: a
// fasthttp.Server whose handler forwards every request to one of the
// targets with a fasthttp.HostClient (round-robin over the targets, as
// its LBClient does), the setup fasthttp's users build. It is the
// alternative to lbkit's own HTTP/1.1 engine that issue 13 asked to be
// measured; see docs/benchmarks.md. It listens on 127.0.0.1 only.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18085", "address to listen on (127.0.0.1 only)")
	target := flag.String("target", "127.0.0.1:18080", "the targets' addresses, comma-separated")
	check := flag.Bool("check", false, "instead of serving, send request-smuggling cases through a fasthttp proxy to a recording target, and print what each got")
	flag.Parse()
	if *check {
		if err := smuggle(os.Stdout); err != nil {
			log.Fatal(err)
		}
		return
	}
	if err := run(*listen, *target); err != nil {
		log.Fatal(err)
	}
}

func run(listen, target string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil || host != "127.0.0.1" {
		return fmt.Errorf("listen address %q: only 127.0.0.1 is allowed", listen)
	}
	var clients []*fasthttp.HostClient
	for _, a := range strings.Split(target, ",") {
		clients = append(clients, &fasthttp.HostClient{Addr: a, MaxConns: 512})
	}
	var next atomic.Uint32
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		c := clients[int(next.Add(1))%len(clients)]
		req := &ctx.Request
		req.Header.Add("X-Forwarded-For", ctx.RemoteIP().String())
		if err := c.Do(req, &ctx.Response); err != nil {
			ctx.Error("bad gateway", fasthttp.StatusBadGateway)
		}
	}}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		srv.Shutdown()
	}()
	return srv.Serve(ln)
}
