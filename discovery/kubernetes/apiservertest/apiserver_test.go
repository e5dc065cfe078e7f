//go:build linux

package apiservertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/server/v3/embed"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	kubeapiservertesting "k8s.io/kubernetes/cmd/kube-apiserver/app/testing"

	k8sdisc "github.com/lbkit/lbkit/discovery/kubernetes"
	"github.com/lbkit/lbkit/lb"
)

// follow is how soon lbkit must apply a change made through the API
// server: the informer's watch delivers it, the source pushes it, the
// group applies it before push returns.
const follow = time.Second

// startEtcd starts an embedded etcd on loopback ports the kernel picks
// and returns its client URL.
func startEtcd(t *testing.T) string {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "lbkit"
	cfg.Dir = t.TempDir()
	any0, err := url.Parse("http://127.0.0.1:0")
	require.NoError(t, err)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*any0}, []url.URL{*any0}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*any0}, []url.URL{*any0}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	cfg.UnsafeNoFsync = true // a test's data
	e, err := embed.StartEtcd(cfg)
	require.NoError(t, err)
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(time.Minute):
		t.Fatal("etcd did not become ready")
	}
	return "http://" + e.Clients[0].Addr().String()
}

// startAPIServer starts a kube-apiserver in the test process on a loopback
// port, storing in etcd at etcdURL. It returns its client configuration
// and a function that stops it (also called when the test ends).
func startAPIServer(t *testing.T, etcdURL string) (*rest.Config, func()) {
	t.Helper()
	storage := storagebackend.NewDefaultConfig("/lbkit/registry", nil)
	storage.Transport.ServerList = []string{etcdURL}
	srv := kubeapiservertesting.StartTestServerOrDie(t, nil, []string{
		"--endpoint-reconciler-type=none",            // no controller fills endpoints: the test writes the slices
		"--disable-admission-plugins=ServiceAccount", // no service-account controller runs
	}, storage)
	var once sync.Once
	stop := func() { once.Do(srv.TearDownFn) }
	t.Cleanup(stop)
	return rest.CopyConfig(srv.ClientConfig), stop
}

// writeKubeconfig writes cfg as a kubeconfig file, the way a daemon gets
// its cluster outside one.
func writeKubeconfig(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthority: cfg.CAFile, CertificateAuthorityData: cfg.CAData, TLSServerName: cfg.ServerName, InsecureSkipTLSVerify: cfg.Insecure}
	kc.AuthInfos["test"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken, TokenFile: cfg.BearerTokenFile,
		ClientCertificate: cfg.CertFile, ClientCertificateData: cfg.CertData, ClientKey: cfg.KeyFile, ClientKeyData: cfg.KeyData}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*kc, path))
	return path
}

// pod is an HTTP server in the test's network namespace that answers
// with its name.
type pod struct {
	name, ip string
	srv      *http.Server
	done     chan struct{}
}

func startPod(t *testing.T, ns *testNetns, name, ip string, port int) *pod {
	t.Helper()
	var ln net.Listener
	var err error
	require.NoError(t, ns.do(func() { ln, err = net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port))) }))
	require.NoError(t, err)
	p := &pod{name: name, ip: ip, done: make(chan struct{})}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })}
	go func() { defer close(p.done); _ = p.srv.Serve(ln) }()
	t.Cleanup(p.stop)
	return p
}

func (p *pod) stop() { p.srv.Close(); <-p.done }

// load sends requests through the load balancer from a few clients until
// stopped, counting answers by pod and every failure.
type load struct {
	mu       sync.Mutex // guards hits, failures
	hits     map[string]int
	failures []string
	stop     chan struct{}
	wg       sync.WaitGroup
}

const (
	clients     = 2
	maxRequests = 1000000 // a bound, should stop never come
	maxLoad     = 5 * time.Minute
)

func startLoad(url string) *load {
	ld := &load{hits: map[string]int{}, stop: make(chan struct{})}
	deadline := time.Now().Add(maxLoad)
	for range clients {
		ld.wg.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer client.CloseIdleConnections()
			pace := time.NewTicker(time.Millisecond) // at most a request per millisecond per client
			defer pace.Stop()
			for range maxRequests / clients {
				select {
				case <-ld.stop:
					return
				case <-pace.C:
				}
				if time.Now().After(deadline) {
					return
				}
				ld.one(client, url)
			}
		})
	}
	return ld
}

func (ld *load) one(client *http.Client, url string) {
	resp, err := client.Get(url)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d: %s", resp.StatusCode, body)
		}
	}
	ld.mu.Lock()
	defer ld.mu.Unlock()
	if err != nil {
		ld.failures = append(ld.failures, err.Error())
		return
	}
	ld.hits[string(body)]++
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

func (ld *load) failed() []string {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return append([]string(nil), ld.failures...)
}

func (ld *load) end() (failures []string) {
	close(ld.stop)
	ld.wg.Wait()
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.failures
}

// waitRequests waits until the load has sent n more requests.
func (ld *load) waitRequests(t *testing.T, n int) {
	t.Helper()
	start := ld.total()
	require.Eventually(t, func() bool { return ld.total() >= start+n }, 30*time.Second, time.Millisecond,
		"%d requests answered, %d wanted; failures: %q", ld.total()-start, n, ld.failed())
}

// targets returns the group's targets as Diagnose sees them, by ID.
func targets(l *lb.LoadBalancer) map[string]lb.TargetDiagnosis {
	out := map[string]lb.TargetDiagnosis{}
	for _, g := range l.Diagnose(lb.Query{}).Groups {
		for _, td := range g.Targets {
			out[td.ID] = td
		}
	}
	return out
}

// within waits until cond holds, at most d, and returns how long it took.
func within(t *testing.T, l *lb.LoadBalancer, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("lbkit did not follow within %v: %s\n%s", d, what, l.Diagnose(lb.Query{}))
		}
		time.Sleep(2 * time.Millisecond) // polling a condition, not waiting for it to happen
	}
	took := time.Since(start)
	t.Logf("followed in %v: %s", took.Round(time.Millisecond), what)
	return took
}

func endpoint(ip string, state string) discoveryv1.Endpoint {
	ready, serving, terminating := true, true, false
	switch state {
	case "terminating":
		ready, serving, terminating = false, true, true
	case "gone":
		ready, serving, terminating = false, false, true
	}
	return discoveryv1.Endpoint{
		Addresses:  []string{ip},
		Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
		Zone:       ptr("zone-a"),
	}
}

func ptr[T any](v T) *T { return &v }

func endpointSlice(name string, at discoveryv1.AddressType, port int, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: map[string]string{
			discoveryv1.LabelServiceName: "web",
			discoveryv1.LabelManagedBy:   "lbkit-test",
		}},
		AddressType: at,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(port)), Protocol: ptr(corev1.ProtocolTCP)}},
		Endpoints:   eps,
	}
}

// TestKubernetesService runs lbkit in front of a Service of a real API
// server and changes the Service's endpoints under traffic: scale up, mark
// endpoints terminating, delete them, add an IPv6 slice, and finally stop
// the API server. lbkit follows each change within a second, drains what
// Kubernetes terminates, keeps the last list when the API server is gone,
// and no request fails.
func TestKubernetesService(t *testing.T) {
	ns := newNetns(t, 4)
	etcdURL := startEtcd(t)
	cfg, stopAPIServer := startAPIServer(t, etcdURL)
	client, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	ctx := context.Background()

	// The pods: HTTP servers in the namespace, one port for all.
	var ln net.Listener
	require.NoError(t, ns.do(func() { ln, err = net.Listen("tcp", net.JoinHostPort(ns.pods[0].String(), "0")) }))
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	pods := make([]*pod, len(ns.pods))
	for i, ip := range ns.pods {
		pods[i] = startPod(t, ns, fmt.Sprintf("pod-%d", i), ip.String(), port)
	}
	id := func(p *pod) string { return net.JoinHostPort(p.ip, strconv.Itoa(port)) }

	// The Service and its first slice.
	_, err = client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(int32(port))}}},
	}
	require.Eventually(t, func() bool { // the API server allocates cluster IPs once its service CIDR is set up
		_, err = client.CoreV1().Services("shop").Create(ctx, svc, metav1.CreateOptions{})
		return err == nil
	}, time.Minute, 50*time.Millisecond, "create the Service: %v", err)
	slices := client.DiscoveryV1().EndpointSlices("shop")
	_, err = slices.Create(ctx, endpointSlice("web-a", discoveryv1.AddressTypeIPv4, port, endpoint(pods[0].ip, "ready"), endpoint(pods[1].ip, "ready")), metav1.CreateOptions{})
	require.NoError(t, err)

	// lbkit, configured the way the daemon does it: from a kubeconfig.
	src, err := k8sdisc.Config{Namespace: "shop", Service: "web", Port: "http", Kubeconfig: writeKubeconfig(t, cfg)}.Source()
	require.NoError(t, err)
	l, err := lb.New(
		lb.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		lb.WithListener("front", lb.HTTP, "127.0.0.1:0", lb.WithForwardTo("web")),
		lb.WithTargetGroup("web", lb.HTTP, lb.WithDiscovery(src, time.Second),
			// Checks often, to follow quickly; a target is taken out only
			// after a second of failures, so that checks slowed by a busy
			// machine (the API server runs in this process) cut no request.
			lb.WithHealthCheck(lb.HealthCheck{Interval: 100 * time.Millisecond, Timeout: 90 * time.Millisecond, UnhealthyThreshold: 10}),
			lb.WithDeregistrationDelay(5*time.Second)),
	)
	require.NoError(t, err)
	require.NoError(t, l.Start())
	lbClosed := false
	defer func() {
		if !lbClosed {
			l.Close()
		}
	}()
	front, ok := l.Addr("front")
	require.True(t, ok)
	serving := func(p *pod) func() bool {
		return func() bool { td, ok := targets(l)[id(p)]; return ok && td.OK }
	}
	within(t, l, 30*time.Second, "the first list, checked healthy", func() bool { return serving(pods[0])() && serving(pods[1])() })

	ld := startLoad("http://" + front.String() + "/")
	defer func() {
		select {
		case <-ld.stop:
		default:
			ld.end()
		}
	}()
	ld.waitRequests(t, 50)
	assert.Positive(t, ld.count("pod-0"))
	assert.Positive(t, ld.count("pod-1"))

	// Scale up: a second slice with a third pod.
	_, err = slices.Create(ctx, endpointSlice("web-b", discoveryv1.AddressTypeIPv4, port, endpoint(pods[2].ip, "ready")), metav1.CreateOptions{})
	require.NoError(t, err)
	within(t, l, follow, "a new slice's endpoint registered", func() bool { _, ok := targets(l)[id(pods[2])]; return ok })
	within(t, l, 10*time.Second, "the new pod healthy", serving(pods[2]))
	before := ld.count("pod-2")
	ld.waitRequests(t, 50)
	assert.Greater(t, ld.count("pod-2"), before, "the new pod takes traffic")

	// Kubernetes terminates pod-0: serving and terminating, so draining.
	_, err = slices.Update(ctx, endpointSlice("web-a", discoveryv1.AddressTypeIPv4, port, endpoint(pods[0].ip, "terminating"), endpoint(pods[1].ip, "ready")), metav1.UpdateOptions{})
	require.NoError(t, err)
	within(t, l, follow, "a terminating endpoint draining", func() bool { td := targets(l)[id(pods[0])]; return !td.DrainUntil.IsZero() })
	stale := ld.count("pod-0")
	ld.waitRequests(t, 100)
	assert.LessOrEqual(t, ld.count("pod-0"), stale+clients, "a draining pod takes no new requests (those in flight finish)")
	assert.Contains(t, l.Diagnose(lb.Query{}).String(), "1 draining")

	// Its endpoint goes away; it keeps draining until the delay ends.
	_, err = slices.Update(ctx, endpointSlice("web-a", discoveryv1.AddressTypeIPv4, port, endpoint(pods[1].ip, "ready")), metav1.UpdateOptions{})
	require.NoError(t, err)
	within(t, l, follow, "the vanished endpoint still draining, not re-registered", func() bool {
		td, ok := targets(l)[id(pods[0])]
		return ok && !td.DrainUntil.IsZero() && !strings.Contains(l.Diagnose(lb.Query{}).Groups[0].Discovery, "1 draining")
	})

	// An endpoint that stops serving while terminating is removed at once
	// from new traffic too.
	_, err = slices.Update(ctx, endpointSlice("web-b", discoveryv1.AddressTypeIPv4, port, endpoint(pods[2].ip, "gone"), endpoint(pods[3].ip, "ready")), metav1.UpdateOptions{})
	require.NoError(t, err)
	within(t, l, follow, "a non-serving endpoint deregistered, a new one registered", func() bool {
		ts := targets(l)
		_, added := ts[id(pods[3])]
		return added && !ts[id(pods[2])].DrainUntil.IsZero()
	})
	within(t, l, 10*time.Second, "pod-3 healthy", serving(pods[3]))

	// An IPv6 slice of the same Service.
	if ns.pod6.IsValid() {
		p6 := startPod(t, ns, "pod-v6", ns.pod6.String(), port)
		_, err = slices.Create(ctx, endpointSlice("web-v6", discoveryv1.AddressTypeIPv6, port, endpoint(p6.ip, "ready")), metav1.CreateOptions{})
		require.NoError(t, err)
		within(t, l, follow, "an IPv6 endpoint registered", func() bool { _, ok := targets(l)[id(p6)]; return ok })
		within(t, l, 10*time.Second, "the IPv6 pod healthy", serving(p6))
		before := ld.count("pod-v6")
		ld.waitRequests(t, 50)
		assert.Greater(t, ld.count("pod-v6"), before, "the IPv6 pod takes traffic")
	} else {
		t.Log("IPv6 could not be set up on the veth pair: no IPv6 slice")
	}

	// A slice deleted: its endpoints drain.
	require.NoError(t, slices.Delete(ctx, "web-b", metav1.DeleteOptions{}))
	within(t, l, follow, "a deleted slice's endpoints draining", func() bool { return !targets(l)[id(pods[3])].DrainUntil.IsZero() })
	stale = ld.count("pod-3")
	ld.waitRequests(t, 100)
	assert.LessOrEqual(t, ld.count("pod-3"), stale+clients, "a deleted slice's pod takes no new requests")

	// The API server goes away: lbkit keeps the last list and says so.
	stopAPIServer()
	within(t, l, time.Minute, "the lost watch reported", func() bool {
		return strings.Contains(l.Diagnose(lb.Query{}).Groups[0].Discovery, "watch disconnected since")
	})
	t.Logf("diagnosis with the API server gone:\n%s", l.Diagnose(lb.Query{}))
	before = ld.total()
	ld.waitRequests(t, 100)
	assert.Greater(t, ld.total(), before, "requests go on with the API server gone")
	assert.True(t, serving(pods[1])(), "the last list is served")

	failures := ld.end()
	assert.Empty(t, failures, "no request failed")
	t.Logf("%d requests through lbkit, by pod: %v", ld.total(), ld.hits)

	// Closing lbkit ends the watch and its informer.
	l.Close()
	lbClosed = true
	require.Eventually(t, func() bool { return !lbkitGoroutines() }, 10*time.Second, 10*time.Millisecond, "goroutines of lbkit or its source left after Close:\n%s", stacks())
}

// lbkitCode matches a stack with code of lbkit or its Kubernetes source
// (the test's own code left out).
var lbkitCode = regexp.MustCompile(`github\.com/lbkit/lbkit/(lb|proxy|balancer|healthcheck|sticky|flowtable|discovery/kubernetes)\.`)

// stacks returns every goroutine's stack.
func stacks() string {
	buf := make([]byte, 1<<22)
	return string(buf[:runtime.Stack(buf, true)])
}

// lbkitGoroutines reports whether a goroutine of lbkit or of its
// Kubernetes source (an informer it started) is left. The API server and
// etcd leave goroutines of their own, which goleak would report: this
// test checks only what lbkit owns.
func lbkitGoroutines() bool {
	for _, g := range strings.Split(stacks(), "\n\n") {
		if lbkitCode.MatchString(g) {
			return true
		}
		if strings.Contains(g, "k8s.io/client-go/tools/cache.(*sharedIndexInformer).Run") {
			return true
		}
	}
	return false
}
