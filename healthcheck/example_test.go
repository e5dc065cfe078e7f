package healthcheck_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/lbkit/lbkit/healthcheck"
)

func ExampleTCP() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	target := healthcheck.Target{ID: "web-1", Addr: ln.Addr().String()}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()

	fmt.Println(healthcheck.TCP{}.Check(ctx, target))
	ln.Close()
	err = healthcheck.TCP{}.Check(ctx, target)
	fmt.Println(healthcheck.Reason(err))
	// Output:
	// <nil>
	// connection refused
}

func ExampleNewHTTP() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	hc, err := healthcheck.NewHTTP(healthcheck.HTTPConfig{
		Path:   "/healthz",
		Host:   "api.example.com",
		Status: "200-399",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err = hc.Check(ctx, healthcheck.Target{ID: "api-1", Addr: srv.Listener.Addr().String()})
	fmt.Println(healthcheck.Reason(err))
	// Output: status 503, want 200-399
}

func ExampleNewUDP() {
	// Needs a raw ICMP socket (root or CAP_NET_RAW) or ping sockets allowed
	// by net.ipv4.ping_group_range; the error says which fix applies.
	udp, err := healthcheck.NewUDP(healthcheck.UDPConfig{})
	if err != nil {
		log.Fatal(err)
	}
	defer udp.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err = udp.Check(ctx, healthcheck.Target{ID: "dns-1", Addr: "127.0.0.1:53"})
	fmt.Println(healthcheck.Reason(err)) // "" if healthy, else e.g. "ICMP port unreachable"
}

func ExampleParseStatusCodes() {
	codes, err := healthcheck.ParseStatusCodes("401, 200-299")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(codes, codes.Contains(204), codes.Contains(404))
	_, err = healthcheck.ParseStatusCodes("200-2xx")
	fmt.Println(err)
	// Output:
	// 200-299,401 true false
	// healthcheck: invalid option: status codes "200-2xx": item 1 "200-2xx": "2xx" is not a 3-digit status code (want codes 100..599 and ranges lo-hi, comma-separated)
}

func ExampleMonitor() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	changes := make(chan healthcheck.Change, 10)
	m, err := healthcheck.New(healthcheck.TCP{},
		healthcheck.WithInterval(200*time.Millisecond),
		healthcheck.WithTimeout(200*time.Millisecond),
		healthcheck.WithRetries(1),
		healthcheck.WithOnChange(func(c healthcheck.Change) { changes <- c }),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	if err := m.Add(healthcheck.Target{ID: "web-1", Addr: ln.Addr().String()}); err != nil {
		log.Fatal(err)
	}
	c := <-changes
	fmt.Printf("%v → %v: %s\n", c.Old, c.New, c.Reason)

	ln.Close() // the service goes away
	c = <-changes
	fmt.Printf("%v → %v: %s\n", c.Old, c.New, c.Reason)

	// Why does web-1 get no traffic?
	st, _ := m.Status("web-1")
	last := st.Results[len(st.Results)-1]
	fmt.Println(st.Serving(), st.Reason, last.OK, last.Reason)
	// Output:
	// unhealthy → healthy: first successful check
	// healthy → unhealthy: connection refused
	// false connection refused false connection refused
}

func ExampleMonitor_ReportFailure() {
	a := healthcheck.Target{ID: "a", Addr: "127.0.0.1:8080"}
	b := healthcheck.Target{ID: "b", Addr: "127.0.0.1:8081"}
	// No checker: health checking off, every target healthy; passive
	// ejection after 2 consecutive failures, at most half the targets.
	m, err := healthcheck.New(nil, healthcheck.WithTargets(a, b), healthcheck.WithEjection(2, time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	for _, id := range []string{"a", "a", "b", "b"} {
		_ = m.ReportFailure(id, "connection reset")
	}
	for _, st := range m.Statuses() {
		fmt.Printf("%s: %v: %s\n", st.Target.ID, st.Condition, st.EjectionReason)
	}
	// Output:
	// a: healthy, ejected: 2 consecutive failures, last: connection reset
	// b: healthy: not ejected after 2 consecutive failures (last: connection reset): 1 of 2 targets already ejected, cap 50%
}
