package config_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/lbkit/lbkit/config"
	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/sticky"
)

// catalog is a discovery source a test factory builds from YAML.
type catalog struct{ Service string }

func (c *catalog) Targets(context.Context) ([]lb.Discovered, error) {
	return []lb.Discovered{{Addr: "127.0.0.1:1"}}, nil
}
func (c *catalog) String() string { return "catalog " + c.Service }

// catalogFactory decodes {service: name}; an empty service is refused.
func catalogFactory(node *yaml.Node) (lb.Source, error) {
	var c struct {
		Service string `yaml:"service"`
	}
	if err := node.Decode(&c); err != nil {
		return nil, err
	}
	if c.Service == "" {
		return nil, errors.New("service: required")
	}
	return &catalog{Service: c.Service}, nil
}

const catalogGroup = `
target_groups:
  - name: app
    protocol: tcp
    discovery:
%s
`

func parseProblems(t *testing.T, src string, opts ...config.Option) []config.Problem {
	t.Helper()
	_, err := config.Parse([]byte(src), opts...)
	require.Error(t, err)
	var ce *config.Error
	require.ErrorAs(t, err, &ce)
	return ce.Problems
}

func TestSourceFactory(t *testing.T) {
	src := fmt.Sprintf(catalogGroup, "      catalog: {service: web}\n      interval: 5s")
	f, err := config.Parse([]byte(src), config.WithSourceFactory("catalog", catalogFactory))
	require.NoError(t, err)
	assert.Equal(t, []string{"catalog"}, f.TargetGroups[0].Discovery.Kinds())
	opts, err := f.Options(nil)
	require.NoError(t, err)
	l, err := lb.New(append(opts, lb.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))...)
	require.NoError(t, err)
	require.NoError(t, l.Start())
	defer l.Close()
	d := l.Diagnose(lb.Query{})
	require.Len(t, d.Groups, 1)
	assert.Contains(t, d.Groups[0].Discovery, "catalog web")
}

func TestSourceFactoryProblems(t *testing.T) {
	withCatalog := config.WithSourceFactory("catalog", catalogFactory)
	for _, tc := range []struct {
		name, section string
		opts          []config.Option
		want          config.Problem
	}{
		{"unregistered kind", "      kubernetes: {service: web}", nil,
			config.Problem{Path: "target_groups[app].discovery.kubernetes", Line: 6, Message: "unknown field (known: dns, port, network, srv, interval)"}},
		{"registered kinds are listed", "      kubernetes: {service: web}", []config.Option{withCatalog},
			config.Problem{Path: "target_groups[app].discovery.kubernetes", Line: 6, Message: "unknown field (known: dns, port, network, srv, interval, catalog)"}},
		{"the factory refuses", "      catalog: {service: \"\"}", []config.Option{withCatalog},
			config.Problem{Path: "target_groups[app].discovery.catalog", Line: 6, Message: "service: required"}},
		{"two kinds", "      catalog: {service: web}\n      dns: web.internal", []config.Option{withCatalog},
			config.Problem{Path: "target_groups[app].discovery", Line: 5, Message: "names catalog and dns; set one kind of discovery"}},
		{"dns fields", "      catalog: {service: web}\n      port: 80", []config.Option{withCatalog},
			config.Problem{Path: "target_groups[app].discovery", Line: 5, Message: "port and network are for dns discovery, not catalog"}},
		{"set twice", "      catalog: {service: web}\n      catalog: {service: api}", []config.Option{withCatalog},
			config.Problem{Path: "target_groups[app].discovery.catalog", Line: 7, Message: "is set twice (first on line 6)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := parseProblems(t, fmt.Sprintf(catalogGroup, tc.section), tc.opts...)
			assert.Contains(t, got, tc.want)
		})
	}
}

func ExampleWithSourceFactory() {
	// A daemon registers the discovery kinds it was built with; config
	// imports none of them.
	file := []byte(`
target_groups:
  - name: app
    protocol: tcp
    discovery:
      catalog: {service: web}
`)
	f, err := config.Parse(file, config.WithSourceFactory("catalog", catalogFactory))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(f.TargetGroups[0].Discovery.Kinds())
	_, err = config.Parse(file) // without the factory
	fmt.Println(err)
	// Output:
	// [catalog]
	// 2 problems:
	// 	target_groups[app].discovery: set dns (with port) or srv (line 5)
	// 	target_groups[app].discovery.catalog: unknown field (known: dns, port, network, srv, interval) (line 6)
}

// memStore is a sticky.Store in memory that a test factory builds.
type memStore struct {
	name  string
	mu    sync.Mutex // guards saved
	saved map[string]string
}

func (m *memStore) Load(_ context.Context, key string) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.saved[key]
	return id, ok, nil
}

func (m *memStore) Save(_ context.Context, key, id string, _ time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saved[key] = id
	return nil
}

func (m *memStore) keys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Collect(maps.Keys(m.saved))
}

// memFactory decodes {name: x} and returns the same store for a name, as
// a program's factory caches its stores.
func memFactory(stores map[string]*memStore) config.StoreFactory {
	return func(node *yaml.Node) (sticky.Store, error) {
		var c struct {
			Name string `yaml:"name"`
		}
		if err := node.Decode(&c); err != nil {
			return nil, err
		}
		if c.Name == "" {
			return nil, errors.New("name: required")
		}
		if stores[c.Name] == nil {
			stores[c.Name] = &memStore{name: c.Name, saved: map[string]string{}}
		}
		return stores[c.Name], nil
	}
}

const storeGroup = `
listeners:
  - {name: t, protocol: tcp, address: "127.0.0.1:0", forward_to: app}
target_groups:
  - name: app
    protocol: tcp
    targets: [{id: only, address: %q}]
    health_check: {enabled: false}
    stickiness:
      kind: %s
%s
`

// TestStoreFactory: a stickiness's store section reaches the group's
// policy, which saves the sessions it learns there under the group's name.
func TestStoreFactory(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	stores := map[string]*memStore{}
	src := fmt.Sprintf(storeGroup, ln.Addr().String(), "source_ip", "      store: {mem: {name: shared}, timeout: 20ms}")
	f, err := config.Parse([]byte(src), config.WithStoreFactory("mem", memFactory(stores)))
	require.NoError(t, err)
	assert.Equal(t, []string{"mem"}, f.TargetGroups[0].Stickiness.Store.Kinds())
	opts, err := f.Options(nil)
	require.NoError(t, err)
	l, err := lb.New(append(opts, lb.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))...)
	require.NoError(t, err)
	require.NoError(t, l.Start())
	defer l.Close()
	a, ok := l.Addr("t")
	require.True(t, ok)
	c, err := net.Dial("tcp", a.String())
	require.NoError(t, err)
	defer c.Close()
	require.Eventually(t, func() bool { return len(stores["shared"].keys()) == 1 }, 10*time.Second, time.Millisecond, "the session saved in the store")
	assert.Regexp(t, `^app/`, stores["shared"].keys()[0])
}

func TestStoreFactoryProblems(t *testing.T) {
	withMem := config.WithStoreFactory("mem", memFactory(map[string]*memStore{}))
	for _, tc := range []struct {
		name, kind, section string
		opts                []config.Option
		want                config.Problem
	}{
		{"unregistered kind", "source_ip", "      store: {redis: {address: x}}", nil,
			config.Problem{Path: "target_groups[app].stickiness.store.redis", Line: 11, Message: "unknown field (known: timeout)"}},
		{"registered kinds are listed", "source_ip", "      store: {redis: {address: x}}", []config.Option{withMem},
			config.Problem{Path: "target_groups[app].stickiness.store.redis", Line: 11, Message: "unknown field (known: timeout, mem)"}},
		{"no kind", "source_ip", "      store: {timeout: 1s}", []config.Option{withMem},
			config.Problem{Path: "target_groups[app].stickiness.store", Line: 11, Message: "names no store: set one of mem"}},
		{"the factory refuses", "source_ip", "      store: {mem: {name: \"\"}}", []config.Option{withMem},
			config.Problem{Path: "target_groups[app].stickiness.store.mem", Line: 11, Message: "name: required"}},
		{"lb cookie", "lb_cookie", "      store: {mem: {name: x}}", []config.Option{withMem},
			config.Problem{Path: "target_groups[app].stickiness.store", Line: 11, Message: "is for source_ip and app_cookie stickiness (an lb_cookie carries its target itself)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := parseProblems(t, fmt.Sprintf(storeGroup, "127.0.0.1:1", tc.kind, tc.section), tc.opts...)
			assert.Equal(t, []config.Problem{tc.want}, got)
		})
	}
}
