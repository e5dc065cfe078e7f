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
	"slices"
	"strings"
	"syscall"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/lbkit/lbkit/discovery/xds"
	"github.com/lbkit/lbkit/discovery/xds/xdstest"
	"github.com/lbkit/lbkit/lb"
)

func main() {
	bootstrap := flag.String("bootstrap", "", "an xDS bootstrap file; empty: the demonstration")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if *bootstrap == "" {
		err = demo(os.Stdout)
	} else {
		err = node(ctx, *bootstrap)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// node runs one lbkit node driven by the control plane a bootstrap file
// names, until ctx ends.
func node(ctx context.Context, path string) error {
	boot, err := xds.LoadBootstrap(path)
	if err != nil {
		return err
	}
	l, err := lb.New() // no listener yet: the control plane sends them
	if err != nil {
		return err
	}
	if err := l.Start(); err != nil {
		return err
	}
	defer l.Close()
	client, err := xds.New(boot, xds.WithApply(xds.Reconfigure(l)))
	if err != nil {
		return err
	}
	client.Start()
	defer client.Close()
	<-ctx.Done()
	return nil
}

// demo runs a control plane, three targets and two nodes in one process.
func demo(out io.Writer) error {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cp, err := xdstest.Start("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer cp.Stop()
	var eps []xdstest.Endpoint
	for _, name := range []string{"a", "b", "c"} {
		addr, stop, err := target(name)
		if err != nil {
			return err
		}
		defer stop()
		eps = append(eps, xdstest.Endpoint{IP: "127.0.0.1", Port: uint32(addr.Port), Health: corev3.HealthStatus_HEALTHY})
	}
	ports := []uint32{freePort(), freePort()}
	snapshot := func(version string, eps []xdstest.Endpoint) error {
		var nodeErr error
		for i, p := range ports { // each node gets its own listener port
			err := cp.Set(fmt.Sprintf("node-%d", i), version, xdstest.Resources{
				Clusters:  []types.Resource{xdstest.Cluster("web", clusterv3.Cluster_ROUND_ROBIN)},
				Endpoints: []types.Resource{xdstest.Assignment("web", eps...)},
				Listeners: []types.Resource{xdstest.HTTPListener("front", "127.0.0.1", p, "routes")},
				Routes:    []types.Resource{xdstest.Routes("routes", "/", "web")},
			})
			nodeErr = cmpErr(nodeErr, err)
		}
		return nodeErr
	}
	if err := snapshot("1", eps); err != nil {
		return err
	}

	for i := range ports {
		l, err := lb.New(lb.WithLogger(quiet))
		if err != nil {
			return err
		}
		if err := l.Start(); err != nil {
			return err
		}
		defer l.Close()
		boot := xds.Bootstrap{
			Servers: []xds.Server{{URI: cp.Addr, Creds: []xds.Creds{{Type: "insecure"}}}},
			Node:    xds.Node{ID: fmt.Sprintf("node-%d", i), Cluster: "edge"},
		}
		client, err := xds.New(boot, xds.WithLogger(quiet), xds.WithApply(xds.Reconfigure(l, lb.WithLogger(quiet))))
		if err != nil {
			return err
		}
		client.Start()
		defer client.Close()
	}
	for i, p := range ports {
		url := fmt.Sprintf("http://127.0.0.1:%d/", p)
		if err := waitFor(func() bool { return answers(url, 1) != "" }); err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		fmt.Fprintf(out, "node %d, version 1, answered by: %s\n", i, distinct(answers(url, 6)))
	}

	// The control plane drains endpoint a.
	eps[0].Health = corev3.HealthStatus_DRAINING
	if err := snapshot("2", eps); err != nil {
		return err
	}
	for i, p := range ports {
		url := fmt.Sprintf("http://127.0.0.1:%d/", p)
		if err := waitFor(func() bool { return !strings.Contains(answers(url, 6), "a") }); err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		fmt.Fprintf(out, "node %d, version 2 (a draining), answered by: %s\n", i, distinct(answers(url, 6)))
	}
	return nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// target starts an HTTP server on loopback that answers with its name.
func target(name string) (*net.TCPAddr, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	return ln.Addr().(*net.TCPAddr), func() { srv.Close(); <-done }, nil
}

// freePort returns a loopback port free now, for a listener the control
// plane will give a node.
func freePort() uint32 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer ln.Close()
	return uint32(ln.Addr().(*net.TCPAddr).Port)
}

// answers sends n requests and returns the answers, "" if one failed.
func answers(url string, n int) string {
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	var got []string
	for range n {
		resp, err := c.Get(url)
		if err != nil {
			return ""
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return ""
		}
		got = append(got, string(b))
	}
	return strings.Join(got, " ")
}

// distinct returns the different words of s, sorted.
func distinct(s string) string {
	w := strings.Fields(s)
	slices.Sort(w)
	return strings.Join(slices.Compact(w), " ")
}

func waitFor(cond func() bool) error {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return nil
		}
	}
	return fmt.Errorf("timed out")
}
