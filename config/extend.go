package config

import (
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/sticky"
)

// SourceFactory builds a discovery source from its section of a target
// group's discovery: for
//
//	discovery:
//	  kubernetes: {namespace: shop, service: web, port: http}
//
// the factory registered for "kubernetes" gets the node of the mapping
// {namespace: shop, service: web, port: http}. It returns the source, or an
// error in words; the error is reported at the section's path and line
// (a factory that knows a finer line may say "line 12: ..." itself). It is
// called each time the file is checked or turned into options, so it
// should only build the source, not start it: the target group starts it.
type SourceFactory func(node *yaml.Node) (lb.Source, error)

// Option extends what a configuration file may hold; give the same options
// to Load or Parse and they stay with the File for Validate and Options.
type Option func(*extensions)

// WithSourceFactory lets a target group's discovery section name kind,
// with the options below it built by f, so that a daemon can plug in
// discovery integrations (Kubernetes, xDS, ...) without config importing
// them. kind is a YAML key other than the built-in ones (dns, srv, port,
// network, interval). A discovery section names one kind: dns, srv or a
// registered one. Without the option, such a key is an unknown field,
// reported with its path and line.
func WithSourceFactory(kind string, f SourceFactory) Option {
	return func(e *extensions) {
		if e.sources == nil {
			e.sources = map[string]SourceFactory{}
		}
		e.sources[kind] = f
	}
}

// extensions are the registered discovery kinds, sticky stores,
// certificate kinds and top-level sections, and the flow log's logger.
type extensions struct {
	sources  map[string]SourceFactory
	stores   map[string]StoreFactory
	certs    map[string]CertificateFactory
	sections map[string]SectionFactory
	flowLog  *slog.Logger
}

// StoreFactory builds a shared sticky-session store from its section of a
// stickiness's store: for
//
//	stickiness:
//	  kind: source_ip
//	  store:
//	    redis: {address: 10.0.0.5:6379}
//
// the factory registered for "redis" gets the node of {address:
// 10.0.0.5:6379}. It returns the store, or an error in words reported at
// the section's path and line. It is called each time the file is checked
// or turned into options: it should not connect, and should return the
// same store for the same section, so that a reload keeps the group's
// sessions (a program caches its stores by their settings).
type StoreFactory func(node *yaml.Node) (sticky.Store, error)

// WithStoreFactory lets a stickiness's store section name kind, built by f
// (see StoreFactory), so that a daemon can plug in stores (Redis, ...)
// without config importing them. A store section names one kind.
func WithStoreFactory(kind string, f StoreFactory) Option {
	return func(e *extensions) {
		if e.stores == nil {
			e.stores = map[string]StoreFactory{}
		}
		e.stores[kind] = f
	}
}

// store returns the factory registered for kind, if any.
func (e *extensions) store(kind string) (StoreFactory, bool) {
	if e == nil {
		return nil, false
	}
	f, ok := e.stores[kind]
	return f, ok && f != nil
}

// storeKinds returns the registered store kinds, sorted.
func (e *extensions) storeKinds() []string {
	if e == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(e.stores))
}

// WithFlowLog sets where listeners with flow_log write their records (see
// lb.WithFlowLog). Default: slog.Default().
func WithFlowLog(l *slog.Logger) Option { return func(e *extensions) { e.flowLog = l } }

func newExtensions(opts []Option) *extensions {
	e := &extensions{}
	for _, o := range opts {
		if o != nil {
			o(e)
		}
	}
	return e
}

// source returns the factory registered for kind, if any.
func (e *extensions) source(kind string) (SourceFactory, bool) {
	if e == nil {
		return nil, false
	}
	f, ok := e.sources[kind]
	return f, ok && f != nil
}

// kinds returns the registered kinds, sorted.
func (e *extensions) kinds() []string {
	if e == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(e.sources))
}

// extensionSource builds the source of a registered kind, recording a
// problem at path (the kind's key) when the factory refuses it.
func (c *compiler) extensionSource(path string, kind string, node *yaml.Node) (lb.Source, bool) {
	f, _ := c.f.ext.source(kind)
	src, err := f(node)
	if err == nil && src == nil {
		err = fmt.Errorf("the %s factory returned no source", kind)
	}
	if err != nil {
		for _, line := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
			c.add(path, "%s", line)
		}
		return nil, false
	}
	return src, true
}

// Kinds returns the discovery kinds registered with WithSourceFactory
// that the section names, sorted.
func (d *Discovery) Kinds() []string { return slices.Sorted(maps.Keys(d.kinds)) }

// Kinds returns the registered store kinds the section names (normally
// one), sorted.
func (s *StickyStore) Kinds() []string { return slices.Sorted(maps.Keys(s.kinds)) }

// CertificateFactory builds a certificate source from its entry of a tls or
// https listener's certificates: for
//
//	certificates:
//	  - acme: {domains: [shop.example.com], email: ops@example.com}
//
// the factory registered for "acme" gets the name of the listener and the
// node of the mapping {domains: ..., email: ...}. It returns the source
// (given to the listener with lb.WithCertificatesFrom), or an error in words,
// reported at the entry's path. Like a SourceFactory it is called each
// time the file is checked or turned into options, so it should only build
// the source; whoever registered it starts what it built.
type CertificateFactory func(listener string, node *yaml.Node) (lb.CertificateSource, error)

// WithCertificateFactory lets an entry of a listener's certificates name
// kind instead of cert_file and key_file, with the options below it built
// by f, so that a daemon can plug in certificate integrations (ACME) without
// config importing them. A listener has at most one such entry.
func WithCertificateFactory(kind string, f CertificateFactory) Option {
	return func(e *extensions) {
		if e.certs == nil {
			e.certs = map[string]CertificateFactory{}
		}
		e.certs[kind] = f
	}
}

// SectionFactory turns a top-level section of the file into load balancer
// options: for
//
//	tracing: {otlp_endpoint: "collector:4317", sample_ratio: 0.1}
//
// the factory registered for "tracing" gets the node of the mapping. It is
// called each time the file is checked or turned into options.
type SectionFactory func(node *yaml.Node) ([]lb.Option, error)

// WithSection lets the file hold the top-level section key (not one of
// File's own), turned into options by f: the extension point of daemon-wide
// integrations (tracing). Without it, such a key is an unknown field.
func WithSection(key string, f SectionFactory) Option {
	return func(e *extensions) {
		if e.sections == nil {
			e.sections = map[string]SectionFactory{}
		}
		e.sections[key] = f
	}
}

// extension returns the map of extension nodes of v (a Discovery, a
// Certificate or the File) that the registered kind name goes in, nil when
// name is not registered there.
func (e *extensions) extension(v reflect.Value, name string) *map[string]*yaml.Node {
	if e == nil {
		return nil
	}
	switch v.Type() {
	case discoveryType:
		if _, ok := e.source(name); ok {
			return &v.Addr().Interface().(*Discovery).kinds
		}
	case stickyStoreType:
		if _, ok := e.store(name); ok {
			return &v.Addr().Interface().(*StickyStore).kinds
		}
	case certificateType:
		if f, ok := e.certs[name]; ok && f != nil {
			return &v.Addr().Interface().(*Certificate).kinds
		}
	case fileType:
		if f, ok := e.sections[name]; ok && f != nil {
			return &v.Addr().Interface().(*File).sections
		}
	}
	return nil
}

// known returns the registered kinds that v's type may hold, sorted.
func (e *extensions) known(t reflect.Type) []string {
	if e == nil {
		return nil
	}
	switch t {
	case discoveryType:
		return e.kinds()
	case stickyStoreType:
		return e.storeKinds()
	case certificateType:
		return slices.Sorted(maps.Keys(e.certs))
	case fileType:
		return slices.Sorted(maps.Keys(e.sections))
	}
	return nil
}

// extensionCertificate builds the certificate source of a registered kind.
func (c *compiler) extensionCertificate(path, listener string, cf *Certificate) (lb.CertificateSource, bool) {
	kinds := slices.Sorted(maps.Keys(cf.kinds))
	if len(kinds) > 1 {
		c.add(path, "names %s; set one kind of certificate", strings.Join(kinds, " and "))
		return nil, false
	}
	if cf.CertFile != "" || cf.KeyFile != "" {
		c.add(path, "sets cert_file or key_file beside %s; set one or the other", kinds[0])
		return nil, false
	}
	f := c.f.ext.certs[kinds[0]]
	src, err := f(listener, cf.kinds[kinds[0]])
	if err == nil && src == nil {
		err = fmt.Errorf("the %s factory returned no certificate source", kinds[0])
	}
	if err != nil {
		for _, line := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
			c.add(path+"."+kinds[0], "%s", line)
		}
		return nil, false
	}
	return src, true
}

// sectionOptions returns the options of the file's registered sections.
func (c *compiler) sectionOptions() []lb.Option {
	var opts []lb.Option
	for _, key := range slices.Sorted(maps.Keys(c.f.sections)) {
		o, err := c.f.ext.sections[key](c.f.sections[key])
		if err != nil {
			for _, line := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
				c.add(key, "%s", line)
			}
			continue
		}
		opts = append(opts, o...)
	}
	return opts
}

// Sections returns the top-level sections registered with WithSection that
// the file holds, sorted.
func (f *File) Sections() []string { return slices.Sorted(maps.Keys(f.sections)) }
