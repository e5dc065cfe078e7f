package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.yaml.in/yaml/v3"

	"github.com/lbkit/lbkit/acme"
	"github.com/lbkit/lbkit/config"
	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/tracing"
)

// integrations are the optional integrations the configuration file may
// name, built by config's extension points: a listener's
// `certificates: [{acme: {...}}]` (an ACME certificate manager) and the
// top-level `tracing: {...}` (OpenTelemetry over OTLP).
//
// config calls the factories each time the file is read, so what they
// build is kept by its configuration: a reload with the same section keeps
// the same manager or tracer (and its certificates, its exporter). What the
// applied configuration no longer names is closed by commit. With check
// set (lbd validate, the checks before a reload or upgrade) nothing is
// started: sections are only checked.
type integrations struct {
	log   *slog.Logger
	dir   string // the configuration file's directory, for relative paths
	check bool

	mu       sync.Mutex // guards the fields below
	gen      int        // counts the reads of the file
	managers map[string]*managerEntry
	tracers  map[string]*tracerEntry
}

type managerEntry struct {
	listener string
	m        *acme.Manager
	started  bool
	gen      int // the last read that named it
}

type tracerEntry struct {
	tp     *sdktrace.TracerProvider // nil when checking
	tracer *tracing.Tracer
	gen    int
}

func newIntegrations(log *slog.Logger, configPath string, check bool) *integrations {
	return &integrations{log: log, dir: filepath.Dir(configPath), check: check,
		managers: map[string]*managerEntry{}, tracers: map[string]*tracerEntry{}}
}

// options are config's options that register the integrations.
func (in *integrations) options() []config.Option {
	return []config.Option{
		config.WithCertificateFactory("acme", in.acme),
		config.WithSection("tracing", in.tracing),
	}
}

// begin starts a new read of the file: what it names is kept by the next
// commit.
func (in *integrations) begin() {
	in.mu.Lock()
	in.gen++
	in.mu.Unlock()
}

// acmeSection is a listener's `certificates: [{acme: {...}}]` entry.
type acmeSection struct {
	Domains  []string `yaml:"domains" json:"domains"`
	Email    string   `yaml:"email" json:"email"`
	CA       string   `yaml:"ca" json:"ca"`
	Storage  string   `yaml:"storage" json:"storage"`
	OnDemand []string `yaml:"on_demand" json:"on_demand"`
	// CARoot is a PEM file of the roots that verify the CA's ACME endpoint
	// (a private CA); default: the system's.
	CARoot string `yaml:"ca_root" json:"ca_root"`
}

// acme builds (or finds) the ACME manager of a listener's acme section.
func (in *integrations) acme(listener string, node *yaml.Node) (lb.CertificateSource, error) {
	var s acmeSection
	if err := decodeStrict(node, &s); err != nil {
		return nil, err
	}
	key, _ := json.Marshal(s)
	k := listener + "\x00" + string(key)
	in.mu.Lock()
	defer in.mu.Unlock()
	if e, ok := in.managers[k]; ok {
		e.gen = in.gen
		return e.m, nil
	}
	cfg := acme.Config{Domains: s.Domains, Email: s.Email, CA: s.CA, Storage: in.path(s.Storage), OnDemand: s.OnDemand,
		Logger: in.log.With("listener", listener)}
	if s.CARoot != "" {
		pem, err := os.ReadFile(in.path(s.CARoot))
		if err != nil {
			return nil, fmt.Errorf("ca_root: %w", err)
		}
		cfg.TrustedRoots = x509.NewCertPool()
		if !cfg.TrustedRoots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_root: %s holds no PEM certificate", s.CARoot)
		}
	}
	m, err := acme.New(cfg)
	if err != nil {
		return nil, err
	}
	in.managers[k] = &managerEntry{listener: listener, m: m, gen: in.gen}
	return m, nil
}

// tracingSection is the top-level `tracing: {...}` section.
type tracingSection struct {
	OTLPEndpoint string  `yaml:"otlp_endpoint" json:"otlp_endpoint"`
	Protocol     string  `yaml:"protocol" json:"protocol"`
	SampleRatio  float64 `yaml:"sample_ratio" json:"sample_ratio"`
	ServiceName  string  `yaml:"service_name" json:"service_name"`
	// TrustedClients are the prefixes of clients whose own trace context
	// (traceparent) is continued; default: none.
	TrustedClients []string `yaml:"trusted_clients" json:"trusted_clients"`
	// Flows adds a span per TCP, TLS and UDP flow.
	Flows bool `yaml:"flows" json:"flows"`
}

// tracing builds (or finds) the tracer of the tracing section.
func (in *integrations) tracing(node *yaml.Node) ([]lb.Option, error) {
	var s tracingSection
	if err := decodeStrict(node, &s); err != nil {
		return nil, err
	}
	c := tracing.Config{Endpoint: s.OTLPEndpoint, Protocol: s.Protocol, SampleRatio: s.SampleRatio, ServiceName: s.ServiceName}
	var errs []error
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	var opts []tracing.Option
	for i, p := range s.TrustedClients {
		pf, err := netip.ParsePrefix(p)
		if err != nil {
			a, aerr := netip.ParseAddr(p)
			if aerr != nil {
				errs = append(errs, fmt.Errorf("trusted_clients[%d]: %q is neither a CIDR prefix nor an address", i, p))
				continue
			}
			pf = netip.PrefixFrom(a, a.BitLen())
		}
		opts = append(opts, tracing.WithTrustedClients(pf))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	key, _ := json.Marshal(s)
	in.mu.Lock()
	defer in.mu.Unlock()
	if e, ok := in.tracers[string(key)]; ok {
		e.gen = in.gen
		return tracerOptions(e.tracer, s.Flows), nil
	}
	e := &tracerEntry{gen: in.gen}
	if in.check {
		e.tracer = tracing.New(nil, opts...)
	} else {
		tp, err := tracing.NewProvider(context.Background(), c)
		if err != nil {
			return nil, err
		}
		e.tp, e.tracer = tp, tracing.New(tp, opts...)
	}
	in.tracers[string(key)] = e
	return tracerOptions(e.tracer, s.Flows), nil
}

// tracerOptions are the load balancer's options for a tracer: HTTP
// requests always, L4 flows if asked.
func tracerOptions(t *tracing.Tracer, flows bool) []lb.Option {
	opts := []lb.Option{lb.WithObserver(t)}
	if flows {
		opts = append(opts, lb.WithFlowObserver(t))
	}
	return opts
}

// commit runs after the last read's options were applied to l: the ACME
// managers it names start (with their listener's address, where the CA
// validates), and what it no longer names is closed.
func (in *integrations) commit(l *lb.LoadBalancer) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for k, e := range in.managers {
		if e.gen != in.gen {
			_ = e.m.Close()
			delete(in.managers, k)
			continue
		}
		if e.started || in.check {
			continue
		}
		addr, ok := l.Addr(e.listener)
		if !ok {
			in.log.Error("acme: no such listener", "listener", e.listener)
			continue
		}
		if err := e.m.Start(context.Background(), addr.String()); err != nil {
			in.log.Error("acme: cannot start", "listener", e.listener, "err", err)
			continue
		}
		e.started = true
	}
	for k, e := range in.tracers {
		if e.gen != in.gen {
			in.shutdownTracer(e)
			delete(in.tracers, k)
		}
	}
}

// close stops every integration: the managers stop renewing, the tracers
// send what they hold.
func (in *integrations) close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	for k, e := range in.managers {
		_ = e.m.Close()
		delete(in.managers, k)
	}
	for k, e := range in.tracers {
		in.shutdownTracer(e)
		delete(in.tracers, k)
	}
}

func (in *integrations) shutdownTracer(e *tracerEntry) {
	if e.tp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.tp.Shutdown(ctx); err != nil {
		in.log.Warn("tracing: spans not sent at shutdown", "err", err)
	}
}

// path resolves a file name relative to the configuration file.
func (in *integrations) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(in.dir, p)
}

// decodeStrict decodes node into v, refusing unknown fields.
func decodeStrict(node *yaml.Node, v any) error {
	b, err := yaml.Marshal(node)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return nil
}
