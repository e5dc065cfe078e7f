package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lbkit/lbkit/admin"
	"github.com/lbkit/lbkit/config"
	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/metrics"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stderr))
}

// flags are lbd's command line.
type flags struct {
	config          string
	admin           string
	adminTokenFile  string
	adminHosts      string
	logFormat       string
	logLevel        string
	demoTargets     bool
	shutdownTimeout time.Duration
}

// run runs the daemon until ctx ends or a stop signal comes, and returns
// the exit code: 0 after a graceful stop, 1 when it cannot start, 2 for a
// bad command line. Logs go to logOut.
func run(ctx context.Context, args []string, logOut io.Writer) int {
	fs := flag.NewFlagSet("lbd", flag.ContinueOnError)
	fs.SetOutput(logOut)
	var f flags
	fs.StringVar(&f.config, "config", "", "the configuration file, YAML (required)")
	fs.StringVar(&f.admin, "admin", "127.0.0.1:9900", "address of the admin endpoint: status page, /stats, /diagnose, /health, /metrics, POST /reload; empty for none. Keep it on loopback: it can reload")
	fs.StringVar(&f.adminTokenFile, "admin-token-file", "", "file holding the bearer token that POST /reload needs (Authorization: Bearer <token>); without one, such calls are accepted on a loopback admin address only")
	fs.StringVar(&f.adminHosts, "admin-hosts", "", "comma-separated host names the admin endpoint answers to, beside localhost and IP addresses (others are refused: DNS rebinding)")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&f.demoTargets, "demo-targets", false, "also start demo targets on the loopback addresses of the file's targets (http: answers its id; tcp and udp: echo prefixed with its id), to try a sample; started once, not on reloads")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long a graceful stop waits for connections and requests in flight")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if f.config == "" || fs.NArg() > 0 {
		fmt.Fprintln(logOut, "lbd: -config is required, and nothing else is taken")
		fs.Usage()
		return 2
	}
	log, err := newLogger(logOut, f.logFormat, f.logLevel)
	if err != nil {
		fmt.Fprintln(logOut, "lbd:", err)
		return 2
	}
	if err := serve(ctx, f, log); err != nil {
		log.Error("lbd cannot run", "err", err)
		return 1
	}
	return 0
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q is not debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q is not text or json", format)
}

// daemon is a running lbd: its load balancer and what reloads need.
type daemon struct {
	path      string
	log       *slog.Logger
	accessLog *slog.Logger // the same logger on every reload, so listeners keep their proxies
	lb        *lb.LoadBalancer
	// responseTimes is the response-time histogram, fed by lb's Response
	// hook and served at /metrics.
	responseTimes *metrics.ResponseTimes

	mu sync.Mutex // serialises reloads (SIGHUP and POST /reload)
}

// serve starts the load balancer, the admin endpoint and the demo targets,
// then handles signals until a stop.
func serve(ctx context.Context, fl flags, log *slog.Logger) error {
	// Signals are taken first, so that a SIGHUP sent while lbd starts
	// reloads rather than kills, and a SIGTERM stops it once it runs.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	raiseFileLimit(log) // the descriptor budget is sized from it
	d := &daemon{path: fl.config, log: log, accessLog: log.With("log", "access"), responseTimes: metrics.NewResponseTimes()}
	f, err := config.Load(fl.config)
	if err != nil {
		log.Error("the configuration is invalid", "file", fl.config, "problems", problemList(err))
		return errors.New("invalid configuration")
	}
	if fl.demoTargets {
		stop, err := startDemoTargets(f, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	opts, err := f.Options(d.accessLog)
	if err != nil {
		log.Error("the configuration is invalid", "file", fl.config, "problems", problemList(err))
		return errors.New("invalid configuration")
	}
	if d.lb, err = lb.New(d.options(opts)...); err != nil {
		return err
	}
	if err := d.lb.Start(); err != nil {
		return err
	}
	defer d.lb.Close()

	var adminSrv *http.Server
	if fl.admin != "" {
		var aopts []admin.Option
		if fl.adminTokenFile != "" {
			b, err := os.ReadFile(fl.adminTokenFile)
			if err != nil {
				return fmt.Errorf("admin token: %w", err)
			}
			tok := strings.TrimSpace(string(b))
			if tok == "" {
				return fmt.Errorf("admin token: %s is empty", fl.adminTokenFile)
			}
			aopts = append(aopts, admin.WithToken(tok))
		}
		if fl.adminHosts != "" {
			aopts = append(aopts, admin.WithHosts(strings.Split(fl.adminHosts, ",")...))
		}
		ln, err := net.Listen("tcp", fl.admin)
		if err != nil {
			return fmt.Errorf("admin endpoint: %w", err)
		}
		adminSrv = &http.Server{Handler: d.adminHandler(aopts...), ReadHeaderTimeout: 10 * time.Second}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := adminSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin endpoint stopped", "err", err)
			}
		}()
		defer func() { adminSrv.Close(); <-done }()
		log.Info("admin endpoint listening", "admin", ln.Addr().String())
	}
	var addrs []string
	st := d.lb.Stats()
	for _, l := range st.Listeners {
		addrs = append(addrs, l.Name+"="+l.Protocol.String()+"://"+l.Addr)
	}
	log.Info("lbd ready", "config", fl.config, "listeners", strings.Join(addrs, " "), "target_groups", len(st.Groups), "pid", os.Getpid())

	for {
		select {
		case <-ctx.Done():
			return d.stop(fl.shutdownTimeout, "context done")
		case s := <-sigs:
			if s == syscall.SIGHUP {
				d.reload(ctx, "SIGHUP") // logged; a bad file changes nothing
				continue
			}
			return d.stop(fl.shutdownTimeout, s.String())
		}
	}
}

// options are the file's options plus the daemon's own.
func (d *daemon) options(opts []lb.Option) []lb.Option {
	return append(opts, lb.WithLogger(d.log), lb.WithHooks(lb.Hooks{Response: d.responseTimes.Observe}))
}

// reload reads the file again and applies it; a bad file changes nothing.
func (d *daemon) reload(_ context.Context, via string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, err := config.Load(d.path)
	if err == nil {
		var opts []lb.Option
		if opts, err = f.Options(d.accessLog); err == nil {
			err = d.lb.Reconfigure(d.options(opts)...)
		}
	}
	if err != nil {
		d.log.Error("reload refused; nothing changed", "via", via, "file", d.path, "problems", problemList(err))
		return err
	}
	d.log.Info("configuration reloaded", "via", via, "file", d.path, "listeners", len(f.Listeners), "target_groups", len(f.TargetGroups))
	return nil
}

// stop shuts the load balancer down gracefully.
func (d *daemon) stop(timeout time.Duration, why string) error {
	d.log.Info("shutting down", "signal", why, "timeout", timeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := d.lb.Shutdown(ctx); err != nil {
		d.log.Warn("connections still open when the shutdown timeout passed were closed", "err", err)
	}
	d.log.Info("stopped")
	return nil
}

// adminHandler is the admin endpoint with /metrics: lbkit's metrics beside
// the Go runtime's and the process's.
func (d *daemon) adminHandler(opts ...admin.Option) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		metrics.NewCollector(d.lb),
		d.responseTimes,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return admin.New(d.lb, append([]admin.Option{
		admin.WithLogger(d.log),
		admin.WithTitle("lbd " + d.path),
		admin.WithReload(func(ctx context.Context) error { return d.reload(ctx, "POST /reload") }),
		admin.WithMetrics(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})),
	}, opts...)...)
}

// problemList returns an error's problems one per entry.
func problemList(err error) []string {
	var ce *config.Error
	if errors.As(err, &ce) {
		out := make([]string, len(ce.Problems))
		for i, p := range ce.Problems {
			out[i] = p.Error()
		}
		return out
	}
	return strings.Split(err.Error(), "\n")
}
