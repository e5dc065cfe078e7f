package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lbkit/lbkit/accesslog"
	"github.com/lbkit/lbkit/admin"
	"github.com/lbkit/lbkit/cmd/lbd/internal/handoff"
	"github.com/lbkit/lbkit/config"
	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/metrics"
)

// flags are lbd run's command line.
type flags struct {
	config          string
	admin           string
	adminTokenFile  string
	adminHosts      string
	logFormat       string
	logLevel        string
	accessLog       string
	accessLogFormat string
	accessLogSample float64
	flowLog         string
	flowLogSample   float64
	pidFile         string
	stateFile       string
	demoTargets     bool
	shutdownTimeout time.Duration
	upgradeTimeout  time.Duration
	warmup          time.Duration
}

func newFlagSet(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("lbd "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	return fs
}

// run runs the daemon until ctx ends or a stop signal comes, and returns
// the exit status: 0 after a graceful stop (or a binary upgrade), 1 when
// it cannot start, 2 for a bad command line. Logs go to logOut.
func run(ctx context.Context, args []string, logOut io.Writer) int {
	fs := newFlagSet("run", logOut)
	var f flags
	fs.StringVar(&f.config, "config", "", "the configuration file, YAML (required)")
	fs.StringVar(&f.admin, "admin", "127.0.0.1:9900", "address of the admin endpoint: status page, JSON, the runtime API, /metrics, POST /reload; empty for none. Keep it on loopback, or give it a token")
	fs.StringVar(&f.adminTokenFile, "admin-token-file", "", "file holding the bearer token that calls changing something need (Authorization: Bearer <token>); without one, such calls are accepted on a loopback admin address only")
	fs.StringVar(&f.adminHosts, "admin-hosts", "", "comma-separated host names the admin endpoint answers to, beside localhost and IP addresses (others are refused: DNS rebinding)")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.accessLog, "access-log", "", "where listeners with access_log write: a file (reopened on SIGUSR1, for logrotate), stderr or stdout; empty: lbd's own log")
	fs.StringVar(&f.accessLogFormat, "access-log-format", "json", "access log format when -access-log is set: json, or combined (Apache's and nginx's, as goaccess reads it)")
	fs.Float64Var(&f.accessLogSample, "access-log-sample", 1, "share of requests logged, 0..1 (5xx and errors always are)")
	fs.StringVar(&f.flowLog, "flow-log", "", "where listeners with flow_log write (JSON, one record per TCP or UDP flow and per refusal): a file (reopened on SIGUSR1), stderr or stdout; empty: lbd's own log")
	fs.Float64Var(&f.flowLogSample, "flow-log-sample", 1, "share of flows logged, 0..1 (refusals, drains, evictions and errors always are)")
	fs.StringVar(&f.pidFile, "pid-file", "", "file to write lbd's process ID to once it serves (the new process's after an upgrade)")
	fs.StringVar(&f.stateFile, "state-file", "", "file keeping the runtime API's changes across restarts and upgrades (JSON); empty: they last as long as the process")
	fs.BoolVar(&f.demoTargets, "demo-targets", false, "also start demo targets on the loopback addresses of the file's targets (http: answers its id; tcp and udp: echo prefixed with its id), to try a sample; started once, not on reloads")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long a graceful stop (and the old process after an upgrade) waits for connections and requests in flight")
	fs.DurationVar(&f.upgradeTimeout, "upgrade-timeout", time.Minute, "how long an upgrade waits for the new process to serve before it gives up and kills it")
	fs.DurationVar(&f.warmup, "warmup", 10*time.Second, "at start (and when taking over in an upgrade), how long to wait at most for every target's first health check before the listeners open; 0: open at once")
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
	if err := checkAccessFlags(f); err != nil {
		fmt.Fprintln(logOut, "lbd:", err)
		return 2
	}
	if err := serve(ctx, f, log, logOut); err != nil {
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

func checkAccessFlags(f flags) error {
	switch f.accessLogFormat {
	case "json", "combined":
	default:
		return fmt.Errorf("-access-log-format %q is not json or combined", f.accessLogFormat)
	}
	if f.accessLogSample < 0 || f.accessLogSample > 1 {
		return fmt.Errorf("-access-log-sample %v is not a share 0..1", f.accessLogSample)
	}
	if f.flowLogSample < 0 || f.flowLogSample > 1 {
		return fmt.Errorf("-flow-log-sample %v is not a share 0..1", f.flowLogSample)
	}
	return nil
}

// daemon is a running lbd: its load balancer and what reloads, upgrades
// and the runtime API need.
type daemon struct {
	fl        flags
	log       *slog.Logger
	accessLog *slog.Logger // the same logger on every reload, so listeners keep their proxies
	flowLog   *slog.Logger
	cluster   *cluster // kubernetes and xds discovery, redis sticky stores
	logFiles  []*accesslog.File
	lb        *lb.LoadBalancer
	socks     *handoff.Sockets
	runtime   *admin.Runtime
	notify    notifier
	// responseTimes is the response-time histogram, fed by lb's Response
	// hook and served at /metrics.
	responseTimes *metrics.ResponseTimes
	// ints are the integrations the file names (ACME, tracing).
	ints *integrations

	mu       sync.Mutex    // serialises reloads, upgrades and state saves
	upgraded chan struct{} // closed once a new process serves: this one drains and exits
	upOnce   sync.Once
}

// serve starts the load balancer, the admin endpoint and the demo targets,
// says it is ready, then handles signals until a stop or an upgrade.
func serve(ctx context.Context, fl flags, log *slog.Logger, logOut io.Writer) error {
	// Signals are taken first, so that a SIGHUP sent while lbd starts
	// reloads rather than kills, and a SIGTERM stops it once it runs.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)

	raiseFileLimit(log) // the descriptor budget is sized from it
	socks, err := handoff.New()
	if err != nil {
		return err
	}
	d := &daemon{fl: fl, log: log, socks: socks, notify: notifier{log: log}, responseTimes: metrics.NewResponseTimes(), upgraded: make(chan struct{})}
	if socks.HasParent() {
		log.Info("taking over the listening sockets of the previous process")
	}
	defer d.closeLogs()
	if d.accessLog, err = d.openLog("access", fl.accessLog, fl.accessLogFormat, fl.accessLogSample, logOut); err != nil {
		return err
	}
	if d.flowLog, err = d.openLog("flow", fl.flowLog, "json", fl.flowLogSample, logOut); err != nil {
		return err
	}

	d.cluster = newCluster(true)
	defer d.cluster.Close() // after the load balancer's Close, deferred below
	d.ints = newIntegrations(log, fl.config, false)
	defer d.ints.close() // after the load balancer's Close, deferred below
	d.ints.begin()
	f, err := config.Load(fl.config, d.configOptions()...)
	if err != nil {
		log.Error("the configuration is invalid", "file", fl.config, "problems", problemList(err))
		return errors.New("invalid configuration")
	}
	if fl.demoTargets {
		stop, err := startDemoTargets(f, log, socks)
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
	d.runtime = admin.NewRuntime(d.lb)
	if err := d.restoreState(); err != nil {
		return err
	}
	d.runtime.OnChange = d.saveState
	// Start waits (up to -warmup) for every target's first health check
	// before the listeners open: targets are unhealthy until then, and a
	// process taking over must not answer 503 meanwhile.
	if err := d.lb.Start(); err != nil {
		return err
	}
	defer d.lb.Close()
	d.ints.commit(d.lb) // ACME managers start once their listeners serve

	if fl.admin != "" {
		stop, err := d.startAdmin()
		if err != nil {
			return err
		}
		defer stop()
	}
	if err := d.ready(); err != nil {
		return err
	}

	for {
		select {
		case <-ctx.Done():
			return d.stop("context done")
		case <-d.upgraded:
			return d.drainAfterUpgrade()
		case s := <-sigs:
			switch s {
			case syscall.SIGHUP:
				_ = d.reload("SIGHUP") // logged; a bad file changes nothing
			case syscall.SIGUSR1:
				d.reopenLogs()
			case syscall.SIGUSR2:
				go func() { _, _ = d.upgrade(context.Background(), "SIGUSR2") }() // logged
			default:
				return d.stop(s.String())
			}
		}
	}
}

// ready writes the PID file, tells the previous process (after an
// upgrade) and systemd that lbd serves, and logs it.
func (d *daemon) ready() error {
	if d.fl.pidFile != "" {
		if err := writeFileAtomic(d.fl.pidFile, []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
			return fmt.Errorf("pid file: %w", err)
		}
	}
	if err := d.socks.Ready(); err != nil {
		return err
	}
	var addrs []string
	st := d.lb.Stats()
	for _, l := range st.Listeners {
		addrs = append(addrs, l.Name+"="+l.Protocol.String()+"://"+l.Addr)
	}
	d.notify.send(fmt.Sprintf("READY=1\nMAINPID=%d\nSTATUS=serving %d listeners, %d target groups", os.Getpid(), len(st.Listeners), len(st.Groups)))
	d.log.Info("lbd ready", "config", d.fl.config, "listeners", strings.Join(addrs, " "), "target_groups", len(st.Groups), "pid", os.Getpid())
	return nil
}

// options are the file's options plus the daemon's own.
func (d *daemon) options(opts []lb.Option) []lb.Option {
	return append(opts, lb.WithLogger(d.log), lb.WithSockets(d.socks), lb.WithWarmup(d.fl.warmup),
		lb.WithHooks(lb.Hooks{Response: d.responseTimes.Observe}))
}

// loadOptions reads and checks the file at path, as run does before it
// starts and a reload before it applies: the file's problems, then what
// the load balancer refuses, every one of them.
func loadOptions(path string, accessLog *slog.Logger) ([]lb.Option, error) {
	cl := newCluster(false) // checks the sections; connects nothing
	defer cl.Close()
	in := newIntegrations(slog.Default(), path, true)
	defer in.close()
	in.begin()
	f, err := config.Load(path, append(cl.options(), in.options()...)...)
	if err != nil {
		return nil, err
	}
	opts, err := f.Options(accessLog)
	if err != nil {
		return nil, err
	}
	if _, err := lb.New(opts...); err != nil {
		return nil, err
	}
	return opts, nil
}

// reload reads the file again and applies it, then makes the runtime
// changes again; a bad file changes nothing.
func (d *daemon) reload(via string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.notify.send(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	defer d.notify.send("READY=1")
	d.ints.begin()
	f, err := config.Load(d.fl.config, d.configOptions()...)
	if err == nil {
		var opts []lb.Option
		if opts, err = f.Options(d.accessLog); err == nil {
			if err = d.lb.Reconfigure(d.options(opts)...); err == nil {
				d.ints.commit(d.lb)
			}
		}
	}
	if err != nil {
		d.log.Error("reload refused; nothing changed", "via", via, "file", d.fl.config, "problems", problemList(err))
		return err
	}
	for _, dc := range d.runtime.Reapply() {
		d.log.Warn("runtime change dropped: the new configuration makes it impossible", "change", dc.Change.String(), "reason", dc.Reason)
	}
	d.log.Info("configuration reloaded", "via", via, "file", d.fl.config, "listeners", len(f.Listeners), "target_groups", len(f.TargetGroups),
		"runtime_changes", len(d.runtime.Changes()))
	return nil
}

// upgrade starts the binary again on the listening sockets; once the new
// process serves, this one drains and exits.
func (d *daemon) upgrade(ctx context.Context, via string) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.upgraded:
		return 0, errors.New("already upgraded: this process is draining")
	default:
	}
	d.log.Info("upgrading: starting the new binary on the listening sockets", "via", via)
	pid, err := d.socks.Upgrade(ctx, d.fl.upgradeTimeout)
	if err != nil {
		d.log.Error("upgrade failed; this process serves on", "via", via, "err", err)
		return 0, err
	}
	d.log.Info("upgraded: the new process serves; this one drains and exits", "via", via, "new_pid", pid)
	d.upOnce.Do(func() { close(d.upgraded) })
	return pid, nil
}

// stop shuts the load balancer down gracefully.
func (d *daemon) stop(why string) error {
	d.notify.send("STOPPING=1")
	d.log.Info("shutting down", "signal", why, "timeout", d.fl.shutdownTimeout.String())
	d.shutdown()
	if d.fl.pidFile != "" {
		removeOwnPIDFile(d.fl.pidFile)
	}
	d.log.Info("stopped")
	return nil
}

// drainAfterUpgrade stops this process once the new one serves: its
// listeners close (the sockets stay open in the new process), what is in
// flight finishes.
func (d *daemon) drainAfterUpgrade() error {
	d.log.Info("draining after the upgrade", "timeout", d.fl.shutdownTimeout.String())
	d.shutdown()
	d.log.Info("stopped after the upgrade")
	return nil
}

func (d *daemon) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), d.fl.shutdownTimeout)
	defer cancel()
	if err := d.lb.Shutdown(ctx); err != nil {
		d.log.Warn("connections still open when the shutdown timeout passed were closed", "err", err)
	}
}

// startAdmin serves the admin endpoint on a socket of the handoff, so
// that an upgrade passes it on too.
func (d *daemon) startAdmin() (stop func(), err error) {
	var aopts []admin.Option
	if d.fl.adminTokenFile != "" {
		b, err := os.ReadFile(d.fl.adminTokenFile)
		if err != nil {
			return nil, fmt.Errorf("admin token: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return nil, fmt.Errorf("admin token: %s is empty", d.fl.adminTokenFile)
		}
		aopts = append(aopts, admin.WithToken(tok))
	}
	if d.fl.adminHosts != "" {
		aopts = append(aopts, admin.WithHosts(strings.Split(d.fl.adminHosts, ",")...))
	}
	ln, err := d.socks.Listen("lbd admin endpoint", "tcp", d.fl.admin)
	if err != nil {
		return nil, fmt.Errorf("admin endpoint: %w", err)
	}
	srv := &http.Server{Handler: d.adminHandler(aopts...), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("admin endpoint stopped", "err", err)
		}
	}()
	d.log.Info("admin endpoint listening", "admin", ln.Addr().String())
	return func() {
		// Calls in flight (an upgrade's own POST) finish first.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		<-done
	}, nil
}

// adminHandler is the admin endpoint with /metrics (lbkit's metrics beside
// the Go runtime's and the process's), the runtime API and upgrades.
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
		admin.WithTitle("lbd " + d.fl.config),
		admin.WithReload(func(context.Context) error { return d.reload("POST /reload") }),
		admin.WithRuntime(d.runtime),
		admin.WithUpgrade(func(ctx context.Context) (int, error) { return d.upgrade(ctx, "POST /upgrade") }),
		admin.WithMetrics(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})),
	}, opts...)...)
}

// configOptions are the options lbd reads its file with: the
// integrations' kinds and the flow log.
func (d *daemon) configOptions() []config.Option {
	opts := append(d.cluster.options(), d.ints.options()...)
	return append(opts, config.WithFlowLog(d.flowLog))
}

// openLog returns the access or flow log's logger (kind): to dest (a file,
// stderr, stdout; empty: lbd's own log), as JSON or the combined log
// format, sampled.
func (d *daemon) openLog(kind, dest, format string, sample float64, stderr io.Writer) (*slog.Logger, error) {
	if dest == "" {
		return d.log.With("log", kind), nil
	}
	var w io.Writer
	switch dest {
	case "stderr":
		w = stderr
	case "stdout":
		w = os.Stdout
	default:
		f, err := accesslog.Open(dest)
		if err != nil {
			return nil, err
		}
		d.logFiles = append(d.logFiles, f)
		w = f
	}
	var h slog.Handler = slog.NewJSONHandler(w, nil)
	if format == "combined" {
		h = accesslog.NewCombinedHandler(w)
	}
	if sample < 1 {
		h = &accesslog.Sampler{Handler: h, Rate: sample}
	}
	return slog.New(h), nil
}

// reopenLogs reopens the log files (SIGUSR1, after logrotate).
func (d *daemon) reopenLogs() {
	for _, f := range d.logFiles {
		if err := f.Reopen(); err != nil {
			d.log.Error("cannot reopen a log file; writing on to the old one", "file", f.Path(), "err", err)
			continue
		}
		d.log.Info("log file reopened", "file", f.Path())
	}
}

func (d *daemon) closeLogs() {
	for _, f := range d.logFiles {
		f.Close()
	}
}

// restoreState makes the runtime changes saved in the state file, if any.
func (d *daemon) restoreState() error {
	if d.fl.stateFile == "" {
		return nil
	}
	b, err := os.ReadFile(d.fl.stateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	dropped, err := d.runtime.Restore(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("state file %s: %w", d.fl.stateFile, err)
	}
	for _, dc := range dropped {
		d.log.Warn("runtime change not restored: the configuration makes it impossible", "change", dc.Change.String(), "reason", dc.Reason)
	}
	d.log.Info("runtime changes restored", "file", d.fl.stateFile, "changes", len(d.runtime.Changes()))
	return nil
}

// saveState writes the runtime changes to the state file, if any. It is
// the Runtime's OnChange: called with its lock held, in order.
func (d *daemon) saveState(changes []admin.Change) {
	if d.fl.stateFile == "" {
		return
	}
	var buf bytes.Buffer
	err := admin.SaveChanges(&buf, changes)
	if err == nil {
		err = writeFileAtomic(d.fl.stateFile, buf.Bytes())
	}
	if err != nil {
		d.log.Error("cannot save the runtime changes; they last as long as this process", "file", d.fl.stateFile, "err", err)
	}
}

// writeFileAtomic writes data to path through a temporary file renamed
// over it, so that a reader never sees half of it.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// removeOwnPIDFile removes the PID file if it still names this process.
func removeOwnPIDFile(path string) {
	b, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		os.Remove(path)
	}
}

// loadWith reads the file at path with in's integrations and returns its
// options.
func loadWith(in *integrations, path string, accessLog *slog.Logger) ([]lb.Option, error) {
	f, err := config.Load(path, in.options()...)
	if err != nil {
		return nil, err
	}
	return f.Options(accessLog)
}
