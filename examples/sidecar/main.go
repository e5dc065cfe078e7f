package main

import (
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
	"syscall"
	"time"

	"github.com/lbkit/lbkit/lb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8000", "address clients connect to")
	service := flag.String("service", "127.0.0.1:8080", "the local service")
	health := flag.String("health", "/healthz", "the service's health endpoint")
	allow := flag.String("allow", "", "if set, only this CIDR prefix may connect (e.g. 10.0.0.0/8)")
	demo := flag.Bool("demo", false, "run a demo service, send requests, print what happened, exit")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *listen, *service, *health, *allow, *demo); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, out io.Writer, listen, service, health, allow string, demo bool) error {
	if demo {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "service says hello to %s\n", r.Header.Get("X-Forwarded-For"))
		})}
		go srv.Serve(ln)
		defer srv.Close()
		service, listen = ln.Addr().String(), "127.0.0.1:0"
	}
	accessLog := slog.New(slog.NewJSONHandler(out, nil))
	opts := []lb.ListenerOption{lb.WithForwardTo("service"), lb.WithAccessLog(accessLog)}
	if allow != "" {
		opts = append(opts, lb.WithAllow(allow))
	}
	changes := make(chan lb.HealthEvent, 4)
	l, err := lb.New(
		lb.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))),
		lb.WithHooks(lb.Hooks{HealthChange: func(e lb.HealthEvent) {
			fmt.Fprintf(out, "health: %s serving=%v (%s)\n", e.Target, e.Serving, e.Reason)
			select {
			case changes <- e:
			default:
			}
		}}),
		lb.WithListener("sidecar", lb.HTTP, listen, opts...),
		lb.WithTargetGroup("service", lb.HTTP,
			lb.WithTarget(service, lb.WithTargetID("local")),
			lb.WithHealthCheck(lb.HealthCheck{Path: health, Status: "200-399", Interval: time.Second, Timeout: 500 * time.Millisecond}),
			lb.WithPassiveEjection(5, 10*time.Second, 100),
		),
	)
	if err != nil {
		return err
	}
	if err := l.Start(); err != nil {
		return err
	}
	defer l.Close()
	front, _ := l.Addr("sidecar")
	fmt.Fprintf(out, "sidecar on %s in front of %s\n", front, service)

	if demo {
		if e := <-changes; !e.Serving {
			return fmt.Errorf("the demo service did not turn healthy: %s", e.Reason)
		}
		for range 2 {
			resp, err := http.Get("http://" + front.String() + "/")
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			fmt.Fprintf(out, "%d %s", resp.StatusCode, b)
		}
		http.DefaultClient.CloseIdleConnections()
		fmt.Fprint(out, l.Diagnose(lb.Query{}))
		return nil
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	for {
		select {
		case <-usr1:
			fmt.Fprint(out, l.Diagnose(lb.Query{}))
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return l.Shutdown(sctx)
		}
	}
}
