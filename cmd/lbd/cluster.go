package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"

	"github.com/lbkit/lbkit/config"
	"github.com/lbkit/lbkit/discovery/kubernetes"
	"github.com/lbkit/lbkit/discovery/xds"
	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/sticky"
	"github.com/lbkit/lbkit/sticky/redisstore"
)

// cluster holds the integrations that follow a cluster: the discovery
// kinds and sticky stores lbd registers with package config (kubernetes
// and xds discovery, the redis store). The
// factories make their clients once per set of settings and keep them for
// the process's life, so that a reload hands the load balancer the same
// sources and stores (its groups keep their sessions and watches); Close
// stops them.
type cluster struct {
	// start makes xDS clients connect as they are made (run); validate
	// leaves them idle, as it starts nothing.
	start bool

	mu     sync.Mutex // guards the maps
	xds    map[string]*xds.Client
	stores map[string]*redisstore.Store
	redis  []*redis.Client
}

func newCluster(start bool) *cluster {
	return &cluster{start: start, xds: map[string]*xds.Client{}, stores: map[string]*redisstore.Store{}}
}

// options are the config options registering the integrations.
func (in *cluster) options() []config.Option {
	return []config.Option{
		config.WithSourceFactory("kubernetes", kubernetes.FromConfig),
		config.WithSourceFactory("xds", in.xdsSource),
		config.WithStoreFactory("redis", in.redisStore),
	}
}

// mapping checks that node is a mapping of the known keys and returns its
// scalar values by key.
func mapping(node *yaml.Node, known ...string) (map[string]string, error) {
	if node == nil || node.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("want a mapping of %s", strings.Join(known, ", "))
	}
	vals := map[string]string{}
	var errs []error
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i], node.Content[i+1]
		switch {
		case !slices.Contains(known, k.Value):
			errs = append(errs, fmt.Errorf("line %d: %s: unknown field (known: %s)", k.Line, k.Value, strings.Join(known, ", ")))
		case v.Kind != yaml.ScalarNode:
			errs = append(errs, fmt.Errorf("line %d: %s: want a single value", v.Line, k.Value))
		default:
			vals[k.Value] = v.Value
		}
	}
	return vals, errors.Join(errs...)
}

// xdsSource is the xds discovery kind: the endpoints of one cluster of an
// xDS control plane, named by a bootstrap file or by server and node_id:
//
//	discovery:
//	  xds: {server: xds.internal:18000, node_id: lbkit-edge-1, cluster: web}
//	  # or: xds: {bootstrap: /etc/lbd/xds.json, cluster: web}
func (in *cluster) xdsSource(node *yaml.Node) (lb.Source, error) {
	v, err := mapping(node, "bootstrap", "server", "node_id", "cluster")
	if err != nil {
		return nil, err
	}
	if v["cluster"] == "" {
		return nil, errors.New("cluster: required (the xDS cluster whose endpoints are the targets)")
	}
	var boot xds.Bootstrap
	var key string
	switch {
	case v["bootstrap"] != "" && (v["server"] != "" || v["node_id"] != ""):
		return nil, errors.New("set bootstrap, or server and node_id, not both")
	case v["bootstrap"] != "":
		if boot, err = xds.LoadBootstrap(v["bootstrap"]); err != nil {
			return nil, err
		}
		key = "bootstrap " + v["bootstrap"]
	case v["server"] == "" || v["node_id"] == "":
		return nil, errors.New("set bootstrap (a bootstrap file), or server (host:port) and node_id")
	default:
		boot = xds.Bootstrap{
			Servers: []xds.Server{{URI: v["server"], Creds: []xds.Creds{{Type: "insecure"}}}},
			Node:    xds.Node{ID: v["node_id"]},
		}
		key = "server " + v["server"] + " node " + v["node_id"]
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	c, ok := in.xds[key]
	if !ok {
		if c, err = xds.New(boot); err != nil {
			return nil, err
		}
		if in.start {
			c.Start()
		}
		in.xds[key] = c
	}
	return c.Cluster(v["cluster"]), nil
}

// redisStore is the redis sticky store:
//
//	store:
//	  redis: {address: 10.0.0.5:6379, prefix: "lbkit:edge:", username: lbd, password_file: /etc/lbd/redis.pass, db: 0}
func (in *cluster) redisStore(node *yaml.Node) (sticky.Store, error) {
	v, err := mapping(node, "address", "prefix", "username", "password_file", "db")
	if err != nil {
		return nil, err
	}
	if v["address"] == "" {
		return nil, errors.New("address: required (host:port)")
	}
	o := redisstore.ClientOptions(v["address"])
	o.Username = v["username"]
	if p := v["password_file"]; p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("password_file: %w", err)
		}
		o.Password = strings.TrimSpace(string(b))
	}
	if db := v["db"]; db != "" {
		if _, err := fmt.Sscan(db, &o.DB); err != nil || o.DB < 0 {
			return nil, fmt.Errorf("db: %q is not a database number", db)
		}
	}
	key := fmt.Sprintf("%s|%s|%s|%s|%d", o.Addr, v["prefix"], o.Username, o.Password, o.DB)
	in.mu.Lock()
	defer in.mu.Unlock()
	if s, ok := in.stores[key]; ok {
		return s, nil
	}
	var opts []redisstore.Option
	if p := v["prefix"]; p != "" {
		opts = append(opts, redisstore.WithPrefix(p))
	}
	c := redis.NewClient(o) // connects on first use
	s := redisstore.New(c, opts...)
	in.stores[key] = s
	in.redis = append(in.redis, c)
	return s, nil
}

// Close stops the xDS clients and closes the Redis clients.
func (in *cluster) Close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, c := range in.xds {
		c.Close()
	}
	for _, c := range in.redis {
		c.Close()
	}
}
