package lb_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/lb"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Example starts an HTTP load balancer in front of two targets and sends
// it requests.
func Example() {
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "a") }))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "b") }))
	defer b.Close()

	l, err := lb.New(
		lb.WithLogger(quiet),
		lb.WithListener("web", lb.HTTP, "127.0.0.1:0", lb.WithForwardTo("app")),
		lb.WithTargetGroup("app", lb.HTTP,
			lb.WithTarget(a.Listener.Addr().String(), lb.WithTargetID("a")),
			lb.WithTarget(b.Listener.Addr().String(), lb.WithTargetID("b")),
			lb.WithoutHealthCheck(), // every target counts as healthy
		),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := l.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()

	front, _ := l.Addr("web")
	var got []string
	for range 4 {
		resp, err := http.Get("http://" + front.String() + "/")
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got = append(got, string(body))
	}
	fmt.Println(strings.Join(got, " "))
	// Output: a b a b
}

// ExampleNew_validation shows that an invalid configuration is refused
// with every problem, each a *lb.FieldError naming its object and field.
func ExampleNew_validation() {
	_, err := lb.New(
		lb.WithListener("web", lb.TCP, "127.0.0.1:99999", lb.WithForwardTo("app")),
		lb.WithTargetGroup("app", lb.HTTP, lb.WithTarget("127.0.0.1:9001", lb.WithWeight(150))),
	)
	fmt.Println(err)
	fmt.Println(errors.Is(err, lb.ErrInvalid))
	var fe *lb.FieldError
	if errors.As(err, &fe) {
		fmt.Printf("%s %q in %s %q: %s\n", fe.Kind, fe.Name, fe.Parent.Kind, fe.Parent.Name, fe.Field)
	}
	// Output:
	// target group "app": target[0] "127.0.0.1:9001": weight 150 is out of range 0..100
	// listener "web": addr "127.0.0.1:99999": port "99999" is out of range 0..65535
	// listener "web": a tcp listener cannot forward to http target group "app" (allowed: tcp→tcp, udp→udp, tls→tcp|tls, http→http, https→http|https)
	// true
	// target "127.0.0.1:9001" in target group "app": Weight
}

// ExampleLoadBalancer_Diagnose asks why a target gets no traffic after it
// went down.
func ExampleLoadBalancer_Diagnose() {
	target, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { // a target that accepts connections
		for {
			c, err := target.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	changes := make(chan lb.HealthEvent, 10)
	l, _ := lb.New(
		lb.WithLogger(quiet),
		lb.WithHooks(lb.Hooks{HealthChange: func(e lb.HealthEvent) { changes <- e }}),
		lb.WithListener("tcp", lb.TCP, "127.0.0.1:0", lb.WithForwardTo("app")),
		lb.WithTargetGroup("app", lb.TCP, lb.WithTarget(target.Addr().String(), lb.WithTargetID("db-1")),
			lb.WithHealthCheck(lb.HealthCheck{Interval: 20 * time.Millisecond, Timeout: 10 * time.Millisecond, UnhealthyThreshold: 1})),
	)
	if err := l.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	fmt.Println("serving:", (<-changes).Serving)
	target.Close() // the target goes down
	e := <-changes
	fmt.Println("serving:", e.Serving, "because", e.Reason)
	g, _ := l.Diagnose(lb.Query{}).Group("app")
	t, _ := g.Target("db-1")
	fmt.Println(t.ID, "receives traffic:", t.OK)
	// Output:
	// serving: true
	// serving: false because connection refused
	// db-1 receives traffic: false
}

// ExampleLoadBalancer_SetWeight drains a target by weight: new connections
// avoid it at once; established ones continue.
func ExampleLoadBalancer_SetWeight() {
	l, _ := lb.New(
		lb.WithLogger(quiet),
		lb.WithTargetGroup("app", lb.TCP, lb.WithTarget("127.0.0.1:9001", lb.WithTargetID("a")), lb.WithTarget("127.0.0.1:9002", lb.WithTargetID("b"))),
		lb.WithListener("tcp", lb.TCP, "127.0.0.1:0", lb.WithForwardTo("app")),
	)
	if err := l.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer l.Shutdown(context.Background())
	fmt.Println(l.SetWeight("app", "a", 0))
	fmt.Println(l.SetWeight("app", "a", 101))
	fmt.Println(l.SetAlgorithm("app", balancer.LeastConnections))
	// Output:
	// <nil>
	// target group "app": target[0] "a": weight 101 is out of range 0..100
	// <nil>
}

// ExampleStats_Group finds a group and a target in a Stats snapshot by
// name, without a loop.
func ExampleStats_Group() {
	l, _ := lb.New(lb.WithTargetGroup("app", lb.TCP,
		lb.WithTarget("127.0.0.1:9001", lb.WithTargetID("a"), lb.WithWeight(3)), lb.WithoutHealthCheck()))
	if err := l.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	st := l.Stats()
	g, ok := st.Group("app")
	fmt.Println(ok, g.Name)
	t, ok := g.Target("a")
	fmt.Println(ok, t.ID, t.Weight)
	_, ok = st.Group("nope")
	fmt.Println(ok)
	// Output:
	// true app
	// true a 3
	// false
}
