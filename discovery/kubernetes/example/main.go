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
	"strconv"
	"strings"
	"syscall"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/lbkit/lbkit/discovery/kubernetes"
	"github.com/lbkit/lbkit/lb"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "a kubeconfig file; empty: the demonstration")
	namespace := flag.String("namespace", "default", "the Service's namespace")
	service := flag.String("service", "web", "the Service's name")
	port := flag.String("port", "http", "the Service port's name or number")
	listen := flag.String("listen", "127.0.0.1:8080", "lbkit's listener, with -kubeconfig")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if *kubeconfig == "" {
		err = demo(ctx, os.Stdout)
	} else {
		err = serve(ctx, *kubeconfig, *namespace, *service, *port, *listen)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// serve follows a Service of a real cluster until ctx ends.
func serve(ctx context.Context, kubeconfig, namespace, service, port, listen string) error {
	src, err := kubernetes.New(service,
		kubernetes.WithNamespace(namespace),
		kubernetes.WithPort(port),
		kubernetes.WithKubeconfig(kubeconfig))
	if err != nil {
		return err
	}
	l, err := lb.New(
		lb.WithListener("front", lb.HTTP, listen, lb.WithForwardTo("web")),
		lb.WithTargetGroup("web", lb.HTTP,
			lb.WithDiscovery(src, 0), // pushed changes apply at once; no polling
			lb.WithDeregistrationDelay(30*time.Second)),
	)
	if err != nil {
		return err
	}
	if err := l.Start(); err != nil {
		return err
	}
	defer l.Close()
	<-ctx.Done()
	return nil
}

// demo runs the same group against an in-memory API: two pods, then one
// of them terminating.
func demo(ctx context.Context, out io.Writer) error {
	a, stopA, err := pod("pod-a")
	if err != nil {
		return err
	}
	defer stopA()
	b, stopB, err := pod("pod-b")
	if err != nil {
		return err
	}
	defer stopB()
	api := fake.NewClientset()
	eps := api.DiscoveryV1().EndpointSlices("shop")
	if _, err := eps.Create(ctx, slice(a, b, false), metav1.CreateOptions{}); err != nil {
		return err
	}
	src, err := kubernetes.New("web", kubernetes.WithNamespace("shop"), kubernetes.WithPort("http"), kubernetes.WithClient(api))
	if err != nil {
		return err
	}
	l, err := lb.New(
		lb.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		lb.WithListener("front", lb.HTTP, "127.0.0.1:0", lb.WithForwardTo("web")),
		lb.WithTargetGroup("web", lb.HTTP, lb.WithDiscovery(src, 0), lb.WithoutHealthCheck()),
	)
	if err != nil {
		return err
	}
	if err := l.Start(); err != nil {
		return err
	}
	defer l.Close()
	front, _ := l.Addr("front")
	url := "http://" + front.String() + "/"
	if err := waitFor(func() bool { return serving(l) == 2 }); err != nil {
		return err
	}
	fmt.Fprintln(out, "two pods ready, answered by:", distinct(answers(url, 4)))

	// Kubernetes terminates pod-a: it is serving and terminating.
	if _, err := eps.Update(ctx, slice(a, b, true), metav1.UpdateOptions{}); err != nil {
		return err
	}
	if err := waitFor(func() bool { return serving(l) == 1 }); err != nil {
		return err
	}
	fmt.Fprintln(out, "pod-a terminating, answered by:", distinct(answers(url, 4)))
	for _, line := range strings.Split(l.Diagnose(lb.Query{}).String(), "\n") {
		if strings.Contains(line, "discovery:") || strings.Contains(line, "deregistered") {
			fmt.Fprintln(out, maskTimes(strings.TrimSpace(line)))
		}
	}
	return nil
}

// slice is the Service's EndpointSlice: pod a (terminating or not) and b.
func slice(a, b string, terminating bool) *discoveryv1.EndpointSlice {
	host := func(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }
	_, p, _ := net.SplitHostPort(a)
	port, _ := strconv.Atoi(p)
	yes, no := true, false
	aReady, aTerm := &yes, &no
	if terminating {
		aReady, aTerm = &no, &yes
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-1", Namespace: "shop", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(port))}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{host(a)}, Conditions: discoveryv1.EndpointConditions{Ready: aReady, Serving: &yes, Terminating: aTerm}},
			{Addresses: []string{host(b)}, Conditions: discoveryv1.EndpointConditions{Ready: &yes, Serving: &yes, Terminating: &no}},
		},
	}
}

func ptr[T any](v T) *T { return &v }

// pod starts an HTTP server that answers with its name, on a loopback
// address of its own and the port all pods share (the demonstration's
// slice has one port, as a Service's has).
func pod(name string) (string, func(), error) {
	ip := map[string]string{"pod-a": "127.0.0.2", "pod-b": "127.0.0.3"}[name]
	ln, err := net.Listen("tcp", ip+":"+strconv.Itoa(demoPort))
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() { srv.Close(); <-done }, nil
}

// demoPort is the pods' port in the demonstration.
var demoPort = 18080

func serving(l *lb.LoadBalancer) int {
	n := 0
	for _, g := range l.Stats().Groups {
		for _, t := range g.Targets {
			if t.Serving {
				n++
			}
		}
	}
	return n
}

func answers(url string, n int) string {
	var got []string
	for range n {
		resp, err := http.Get(url)
		if err != nil {
			got = append(got, err.Error())
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
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

// maskTimes replaces clock times, so the output is the same every run.
func maskTimes(s string) string {
	f := strings.Fields(s)
	for i, w := range f {
		if len(w) >= 8 && w[2] == ':' && w[5] == ':' {
			f[i] = "HH:MM:SS" + strings.TrimLeft(w[8:], "0123456789")
		}
	}
	return strings.Join(f, " ")
}
