package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/proxy"
)

func main() {
	mode := flag.String("mode", "lbkit", "target, lbkit, lbkit-loop (HTTP.EventLoop), httputil or httputil-pool")
	listen := flag.String("listen", "127.0.0.1:18081", "address to listen on (127.0.0.1 only)")
	target := flag.String("target", "127.0.0.1:18080", "the targets' addresses, comma-separated")
	size := flag.Int("size", 100, "response size in bytes (target mode)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file until the process is stopped")
	memprofile := flag.String("memprofile", "", "write an allocation profile to this file when the process is stopped")
	flag.Parse()
	if *memprofile != "" {
		runtime.MemProfileRate = 4096
		defer func() {
			f, err := os.Create(*memprofile)
			if err != nil {
				log.Fatal(err)
			}
			defer f.Close()
			if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
				log.Fatal(err)
			}
		}()
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	if err := run(*mode, *listen, *target, *size); err != nil {
		log.Print(err)
		return
	}
}

func run(mode, listen, target string, size int) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil || host != "127.0.0.1" {
		return fmt.Errorf("listen address %q: only 127.0.0.1 is allowed", listen)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var serve func() error
	var shutdown func(context.Context) error
	switch mode {
	case "target":
		body := []byte(strings.Repeat("x", size))
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write(body)
		})}
		serve, shutdown = func() error { return srv.Serve(ln) }, srv.Shutdown
	case "lbkit", "lbkit-loop":
		var ts []balancer.Target
		for i, a := range strings.Split(target, ",") {
			ts = append(ts, balancer.Target{ID: fmt.Sprint("t", i), Addr: a, Weight: 1})
		}
		b, err := balancer.New(balancer.WithTargets(ts...))
		if err != nil {
			return err
		}
		router, err := proxy.Forward(&proxy.Upstream{Name: "bench", Balancer: b})
		if err != nil {
			return err
		}
		h := &proxy.HTTP{EventLoop: mode == "lbkit-loop"}
		if err := h.SetRouter(router); err != nil {
			return err
		}
		serve, shutdown = func() error { return h.Serve(ln) }, h.Shutdown
	case "httputil", "httputil-pool":
		targets := strings.Split(target, ",")
		var next atomic.Uint32
		rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
			u := &url.URL{Scheme: "http", Host: targets[int(next.Add(1))%len(targets)]}
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
		}}
		if mode == "httputil-pool" {
			rp.Transport = &http.Transport{MaxIdleConnsPerHost: 512}
			rp.BufferPool = newPool()
		}
		srv := &http.Server{Handler: rp}
		serve, shutdown = func() error { return srv.Serve(ln) }, srv.Shutdown
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// pool is a ReverseProxy buffer pool, for the httputil-pool variant.
type pool struct{ c chan []byte }

func newPool() *pool { return &pool{c: make(chan []byte, 256)} }

func (p *pool) Get() []byte {
	select {
	case b := <-p.c:
		return b
	default:
		return make([]byte, 32<<10)
	}
}

func (p *pool) Put(b []byte) {
	select {
	case p.c <- b:
	default:
	}
}
