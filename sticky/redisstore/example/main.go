package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/sticky/redisstore"
)

func main() {
	addr := flag.String("redis", "127.0.0.1:6379", "the Redis both nodes share")
	flag.Parse()
	if err := run(os.Stdout, *addr, nil); err != nil {
		log.Fatal(err)
	}
}

// run starts three targets and two nodes sharing the Redis at addr, and
// sends a client's requests to both; stopRedis, if not nil, is called
// half-way to show the nodes carrying on without it.
func run(out io.Writer, addr string, stopRedis func()) error {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var targets []lb.GroupOption
	for _, name := range []string{"a", "b", "c"} {
		a, stop, err := target(name)
		if err != nil {
			return err
		}
		defer stop()
		targets = append(targets, lb.WithTarget(a, lb.WithTargetID(name)))
	}

	store := redisstore.Dial(addr)
	defer store.Close()
	sticky := lb.WithStickiness(lb.Stickiness{Kind: lb.SourceIP, Store: store})
	var urls []string
	var nodes []*lb.LoadBalancer
	for range 2 {
		l, err := lb.New(
			lb.WithLogger(quiet),
			lb.WithListener("front", lb.HTTP, "127.0.0.1:0", lb.WithForwardTo("web")),
			lb.WithTargetGroup("web", lb.HTTP, append(targets, sticky, lb.WithoutHealthCheck())...),
		)
		if err != nil {
			return err
		}
		if err := l.Start(); err != nil {
			return err
		}
		defer l.Close()
		a, _ := l.Addr("front")
		urls = append(urls, "http://"+a.String()+"/")
		nodes = append(nodes, l)
	}

	for _, client := range []string{"127.0.0.11", "127.0.0.12"} {
		fmt.Fprintf(out, "client %s: node 0 → %s, node 1 → %s, node 0 → %s, node 1 → %s\n", client,
			get(client, urls[0]), get(client, urls[1]), get(client, urls[0]), get(client, urls[1]))
	}
	if stopRedis != nil {
		stopRedis()
		client := "127.0.0.11"
		fmt.Fprintf(out, "Redis gone, client %s: node 0 → %s, node 1 → %s\n", client, get(client, urls[0]), get(client, urls[1]))
		fmt.Fprintf(out, "Redis gone, new client 127.0.0.13: node 0 → %s (balanced)\n", get("127.0.0.13", urls[0]))
		st := nodes[0].Stats().Groups[0].Sticky
		fmt.Fprintf(out, "node 0: %d sessions learned from Redis, store errors counted: %t\n", st.StoreHits, st.StoreErrors > 0 || st.StoreSkipped > 0)
	}
	return nil
}

// target starts an HTTP server on loopback that answers with its name.
func target(name string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() { srv.Close(); <-done }, nil
}

// get sends a request from the loopback address client and returns the
// answer.
func get(client, url string) string {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(client)}, Timeout: 5 * time.Second}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}
