package xds_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/discovery/xds"
	"github.com/lbkit/lbkit/discovery/xds/xdstest"
	"github.com/lbkit/lbkit/lb"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const node = "lbkit-test"

// target is an HTTP server on loopback that answers with its name.
type target struct {
	name string
	ip   string
	port uint32
}

func startTarget(t *testing.T, name string) target {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	a := ln.Addr().(*net.TCPAddr)
	return target{name: name, ip: "127.0.0.1", port: uint32(a.Port)}
}

func (tg target) id() string { return net.JoinHostPort(tg.ip, strconv.Itoa(int(tg.port))) }

func (tg target) ep(h corev3.HealthStatus) xdstest.Endpoint {
	return xdstest.Endpoint{IP: tg.ip, Port: tg.port, Health: h}
}

// freePort returns a loopback port free now, for a listener the control
// plane will tell lbkit to open.
func freePort(t *testing.T) uint32 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return uint32(ln.Addr().(*net.TCPAddr).Port)
}

// load sends requests through an lbkit listener until stopped.
type load struct {
	mu       sync.Mutex // guards hits, failures
	hits     map[string]int
	failures []string
	stop     chan struct{}
	wg       sync.WaitGroup
}

const clients = 2

func startLoad(url string) *load {
	ld := &load{hits: map[string]int{}, stop: make(chan struct{})}
	deadline := time.Now().Add(3 * time.Minute) // a bound, should stop never come
	for range clients {
		ld.wg.Go(func() {
			c := &http.Client{Timeout: 10 * time.Second}
			defer c.CloseIdleConnections()
			pace := time.NewTicker(time.Millisecond) // at most a request per millisecond per client
			defer pace.Stop()
			for range 1000000 { // a bound, should stop never come
				select {
				case <-ld.stop:
					return
				case <-pace.C:
				}
				if time.Now().After(deadline) {
					return
				}
				body, err := get(c, url)
				ld.mu.Lock()
				if err != nil {
					ld.failures = append(ld.failures, err.Error())
				} else {
					ld.hits[body]++
				}
				ld.mu.Unlock()
			}
		})
	}
	return ld
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(b), nil
}

func (ld *load) count(name string) int {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.hits[name]
}

func (ld *load) total() int {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	n := 0
	for _, c := range ld.hits {
		n += c
	}
	return n
}

func (ld *load) more(t *testing.T, n int) {
	t.Helper()
	start := ld.total()
	require.Eventually(t, func() bool { return ld.total() >= start+n }, 20*time.Second, time.Millisecond)
}

func (ld *load) end() []string {
	close(ld.stop)
	ld.wg.Wait()
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.failures
}

func group(l *lb.LoadBalancer, name string) (lb.GroupDiagnosis, bool) {
	for _, g := range l.Diagnose(lb.Query{}).Groups {
		if g.Name == name {
			return g, true
		}
	}
	return lb.GroupDiagnosis{}, false
}

func targetOf(l *lb.LoadBalancer, g, id string) (lb.TargetDiagnosis, bool) {
	gd, _ := group(l, g)
	for _, td := range gd.Targets {
		if td.ID == id {
			return td, true
		}
	}
	return lb.TargetDiagnosis{}, false
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 20*time.Second, 2*time.Millisecond, "%s", what)
}

// TestControlPlane drives an lbkit node from go-control-plane's server
// under traffic: snapshots applied, a DRAINING endpoint drained, NACKed
// snapshots leaving the last good state, the server restarted
// mid-stream, a removed cluster's targets drained; no request fails.
func TestControlPlane(t *testing.T) {
	cp, err := xdstest.Start("127.0.0.1:0")
	require.NoError(t, err)
	stopped := false
	defer func() {
		if !stopped {
			cp.Stop()
		}
	}()
	t0, t1, t2, t3 := startTarget(t, "t0"), startTarget(t, "t1"), startTarget(t, "t2"), startTarget(t, "t3")
	port := freePort(t)
	healthy := corev3.HealthStatus_HEALTHY
	res := func(web *endpointv3.ClusterLoadAssignment) xdstest.Resources {
		return xdstest.Resources{
			Clusters:  []types.Resource{xdstest.Cluster("web", clusterv3.Cluster_ROUND_ROBIN)},
			Endpoints: []types.Resource{web},
			Listeners: []types.Resource{xdstest.HTTPListener("front", "127.0.0.1", port, "routes")},
			Routes:    []types.Resource{xdstest.Routes("routes", "/", "web")},
		}
	}
	require.NoError(t, cp.Set(node, "1", res(xdstest.Assignment("web", t0.ep(healthy), t1.ep(healthy)))))

	l, err := lb.New(lb.WithLogger(quiet))
	require.NoError(t, err)
	require.NoError(t, l.Start())
	defer l.Close()
	c, err := xds.New(xds.Bootstrap{Servers: []xds.Server{{URI: cp.Addr}}, Node: xds.Node{ID: node}},
		xds.WithLogger(quiet), xds.WithApply(xds.Reconfigure(l, lb.WithLogger(quiet))),
		xds.WithDrain(2*time.Second), xds.WithBackoff(20*time.Millisecond, 200*time.Millisecond))
	require.NoError(t, err)
	c.Start()
	defer c.Close()

	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	eventually(t, "the listener from LDS/RDS serves", func() bool { _, err := get(http.DefaultClient, url); return err == nil })
	assert.Equal(t, "1", cp.ACKed(resource.ClusterType))
	ld := startLoad(url)
	defer func() {
		select {
		case <-ld.stop:
		default:
			ld.end()
		}
	}()
	ld.more(t, 50)
	assert.Positive(t, ld.count("t0"))
	assert.Positive(t, ld.count("t1"))

	// A snapshot adds an endpoint.
	require.NoError(t, cp.Set(node, "2", res(xdstest.Assignment("web", t0.ep(healthy), t1.ep(healthy), t2.ep(healthy)))))
	eventually(t, "t2 registered", func() bool { _, ok := targetOf(l, "web", t2.id()); return ok })
	before := ld.count("t2")
	ld.more(t, 50)
	assert.Greater(t, ld.count("t2"), before, "the new endpoint takes traffic")

	// A DRAINING endpoint drains.
	require.NoError(t, cp.Set(node, "3", res(xdstest.Assignment("web", t0.ep(corev3.HealthStatus_DRAINING), t1.ep(healthy), t2.ep(healthy)))))
	eventually(t, "t0 draining", func() bool { td, _ := targetOf(l, "web", t0.id()); return !td.DrainUntil.IsZero() })
	stale := ld.count("t0")
	ld.more(t, 100)
	assert.LessOrEqual(t, ld.count("t0"), stale+clients, "a draining endpoint takes no new requests")
	eventually(t, "EDS version 3 ACKed", func() bool { return cp.ACKed(resource.EndpointType) == "3" })

	// A snapshot lbkit cannot express is NACKed, naming the field; the
	// last good configuration stays.
	bad := res(xdstest.Assignment("web", t1.ep(healthy), t2.ep(healthy)))
	bad.Clusters = []types.Resource{xdstest.Cluster("web", clusterv3.Cluster_CLUSTER_PROVIDED)}
	require.NoError(t, cp.Set(node, "4", bad))
	eventually(t, "a NACK naming lb_policy", func() bool {
		return slicesContain(cp.NACKs(), `cluster "web": lb_policy: CLUSTER_PROVIDED is not supported`)
	})
	assert.Equal(t, "3", c.Status().Versions["CDS"], "the last good version stays")
	// One lbkit refuses is NACKed with lbkit's error.
	clash := res(xdstest.Assignment("web", t1.ep(healthy), t2.ep(healthy)))
	clash.Listeners = append(clash.Listeners, xdstest.HTTPListener("front-again", "127.0.0.1", port, "routes"))
	require.NoError(t, cp.Set(node, "5", clash))
	eventually(t, "a NACK with lbkit's error", func() bool {
		return slicesContain(cp.NACKs(), "lbkit refused the configuration")
	})
	t.Logf("NACKs: %q", cp.NACKs())
	assert.Equal(t, []string{"front"}, c.Status().Listeners)
	ld.more(t, 50)

	// The control plane restarts mid-stream: the node keeps serving, says
	// so, and picks up the new server's snapshot.
	cp.Stop()
	stopped = true
	eventually(t, "the lost stream reported", func() bool {
		g, _ := group(l, "web")
		return strings.Contains(g.Discovery, "watch disconnected since")
	})
	ld.more(t, 100)
	cp, err = xdstest.Start(cp.Addr)
	require.NoError(t, err)
	stopped = false
	require.NoError(t, cp.Set(node, "6", res(xdstest.Assignment("web", t1.ep(healthy), t2.ep(healthy), t3.ep(healthy)))))
	eventually(t, "reconnected and t3 registered", func() bool { _, ok := targetOf(l, "web", t3.id()); return ok && c.Status().Connected })
	before = ld.count("t3")
	ld.more(t, 50)
	assert.Greater(t, ld.count("t3"), before)

	// A cluster removed: its route moves to another cluster, its targets
	// drain, then its group goes.
	moved := xdstest.Resources{
		Clusters:  []types.Resource{xdstest.Cluster("web-v2", clusterv3.Cluster_LEAST_REQUEST)},
		Endpoints: []types.Resource{xdstest.Assignment("web-v2", t3.ep(healthy))},
		Listeners: []types.Resource{xdstest.HTTPListener("front", "127.0.0.1", port, "routes")},
		Routes:    []types.Resource{xdstest.Routes("routes", "/", "web-v2")},
	}
	require.NoError(t, cp.Set(node, "7", moved))
	eventually(t, "web's targets draining", func() bool {
		td, ok := targetOf(l, "web", t1.id())
		return ok && !td.DrainUntil.IsZero()
	})
	stale1, stale2 := ld.count("t1"), ld.count("t2")
	ld.more(t, 100)
	assert.LessOrEqual(t, ld.count("t1")+ld.count("t2"), stale1+stale2+clients, "the removed cluster takes no new requests")
	eventually(t, "web gone after its drain", func() bool { _, ok := group(l, "web"); return !ok })
	g, ok := group(l, "web-v2")
	require.True(t, ok)
	assert.Equal(t, "least_connections", g.Algorithm)

	failures := ld.end()
	assert.Empty(t, failures, "no request failed")
	t.Logf("requests by target: %v", ld.hits)
	c.Close()
	cp.Stop()
	stopped = true
}

func slicesContain(ss []string, sub string) bool {
	for _, s := range ss {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestResourceDoesNotExist: endpoints asked for and never sent are taken as
// none after the resource timeout, so a listener waiting for them serves
// (a cluster without endpoints: 503) instead of waiting forever.
func TestResourceDoesNotExist(t *testing.T) {
	cp, err := xdstest.Start("127.0.0.1:0")
	require.NoError(t, err)
	defer cp.Stop()
	port := freePort(t)
	require.NoError(t, cp.Set(node, "1", xdstest.Resources{
		Clusters:  []types.Resource{xdstest.Cluster("ghost", clusterv3.Cluster_ROUND_ROBIN)},
		Listeners: []types.Resource{xdstest.TCPListener("db", "127.0.0.1", port, "ghost")},
	}))
	l, err := lb.New(lb.WithLogger(quiet))
	require.NoError(t, err)
	require.NoError(t, l.Start())
	defer l.Close()
	c, err := xds.New(xds.Bootstrap{Servers: []xds.Server{{URI: cp.Addr}}, Node: xds.Node{ID: node}},
		xds.WithLogger(quiet), xds.WithApply(xds.Reconfigure(l, lb.WithLogger(quiet))), xds.WithResourceTimeout(100*time.Millisecond))
	require.NoError(t, err)
	c.Start()
	defer c.Close()
	eventually(t, "the endpoints taken as none", func() bool { _, err := c.Cluster("ghost").Targets(t.Context()); return err == nil })
	ds, err := c.Cluster("ghost").Targets(t.Context())
	require.NoError(t, err)
	assert.Empty(t, ds)
	eventually(t, "the listener no longer waits", func() bool { _, ok := l.Addr("db"); return ok })
	assert.Equal(t, "xds cluster ghost from "+cp.Addr, c.Cluster("ghost").String())
}
