package config_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/lbkit/lbkit/config"
	"github.com/lbkit/lbkit/lb"
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
