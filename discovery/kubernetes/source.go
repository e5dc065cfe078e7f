package kubernetes

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/lbkit/lbkit/lb"
)

// DefaultNamespace is the namespace of a Source made without WithNamespace.
const DefaultNamespace = "default"

// recheck is how often a watch looks whether the informer has synced, when
// nothing else woke it.
const recheck = 100 * time.Millisecond

// Source is a discovery source following one Kubernetes Service's
// EndpointSlices. It is an lb.Watcher. Make one with New; it is safe for
// concurrent use and holds nothing to close: a watch ends with its context.
type Source struct {
	namespace, service, port, kubeconfig string
	client                               kubernetes.Interface
	clientSet                            bool // given with WithClient
}

// Option configures a Source.
type Option func(*Source)

// WithNamespace sets the Service's namespace. Default: DefaultNamespace.
func WithNamespace(ns string) Option { return func(s *Source) { s.namespace = ns } }

// WithPort chooses the Service port whose endpoints become targets, by name
// ("http") or by number ("8080", the endpoints' port, which is the
// Service's targetPort). Default: the slices' only port; a slice with
// several ports and no WithPort gives no targets.
func WithPort(port string) Option { return func(s *Source) { s.port = port } }

// WithKubeconfig reads the cluster and credentials from a kubeconfig file.
// Default: the in-cluster configuration (the pod's service account).
func WithKubeconfig(path string) Option { return func(s *Source) { s.kubeconfig = path } }

// WithClient uses an existing client (a shared one, or a fake in tests)
// instead of making one; WithKubeconfig is then ignored.
func WithClient(c kubernetes.Interface) Option {
	return func(s *Source) { s.client, s.clientSet = c, true }
}

// New returns a Source for the Service called service. Without WithClient
// it makes a client from WithKubeconfig's file or the in-cluster
// configuration, and fails if neither can be read; it does not contact the
// API server.
func New(service string, opts ...Option) (*Source, error) {
	s := &Source{namespace: DefaultNamespace, service: service}
	for _, o := range opts {
		o(s)
	}
	var errs []error
	if service == "" {
		errs = append(errs, errors.New("kubernetes: the service name is empty"))
	}
	if s.namespace == "" {
		errs = append(errs, errors.New("kubernetes: the namespace is empty"))
	}
	if n, err := strconv.Atoi(s.port); err == nil && (n < 1 || n > 65535) {
		errs = append(errs, fmt.Errorf("kubernetes: port %d is out of range 1..65535", n))
	}
	if s.clientSet && s.client == nil {
		errs = append(errs, errors.New("kubernetes: the client is nil"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if s.client == nil {
		cfg, err := restConfig(s.kubeconfig)
		if err != nil {
			return nil, err
		}
		c, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("kubernetes: %w", err)
		}
		s.client = c
	}
	return s, nil
}

// restConfig reads a kubeconfig file, or the in-cluster configuration.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubernetes: kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes: no kubeconfig given and not in a cluster: %w", err)
	}
	return cfg, nil
}

// String returns e.g. "kubernetes shop/web port http".
func (s *Source) String() string {
	return fmt.Sprintf("kubernetes %s/%s port %s", s.namespace, s.service, cmp.Or(s.port, "(the only one)"))
}

// Equal reports whether o is a Source of the same settings, so that a
// daemon's reload, which builds its sources anew, does not restart a
// watch that did not change.
func (s *Source) Equal(o lb.Source) bool {
	x, ok := o.(*Source)
	if !ok || x == nil {
		return false
	}
	if s.clientSet || x.clientSet {
		return s == x
	}
	return s.namespace == x.namespace && s.service == x.service && s.port == x.port && s.kubeconfig == x.kubeconfig
}

// selector is the label selector of the Service's slices.
func (s *Source) selector() string { return discoveryv1.LabelServiceName + "=" + s.service }

// Targets lists the Service's slices once and returns their endpoints.
func (s *Source) Targets(ctx context.Context) ([]lb.Discovered, error) {
	list, err := s.client.DiscoveryV1().EndpointSlices(s.namespace).List(ctx, metav1.ListOptions{LabelSelector: s.selector()})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	ptrs := make([]*discoveryv1.EndpointSlice, len(list.Items))
	for i := range list.Items {
		ptrs[i] = &list.Items[i]
	}
	return s.targets(ptrs), nil
}

// Watch follows the Service's slices with an informer until ctx ends,
// pushing the merged endpoints after every change (see lb.Watcher). A
// list or watch that fails (the API server cannot be reached, refuses the
// credentials...) is pushed as an Update with Err; client-go keeps trying
// by itself, and the next list or watch that succeeds clears it.
func (s *Source) Watch(ctx context.Context, push func(lb.Update)) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // the informer's goroutines end before Watch returns
	defer cancel()

	changed := make(chan struct{}, 1)
	signal := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	var (
		mu      sync.Mutex // guards failure
		failure error      // the last failed list or watch, nil once one succeeds
	)
	result := func(err error) {
		if err != nil && benign(err) {
			return
		}
		mu.Lock()
		was := failure
		failure = err
		mu.Unlock()
		if (was == nil) != (err == nil) {
			signal()
		}
	}
	// client-go retries a watch the server refuses without telling the
	// informer's error handler, so the list and watch calls themselves
	// report how they went.
	api := s.client.DiscoveryV1().EndpointSlices(s.namespace)
	selector := s.selector()
	list := func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		o.LabelSelector = selector
		l, err := api.List(ctx, o)
		result(err)
		return l, err
	}
	watchFn := func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		o.LabelSelector = selector
		w, err := api.Watch(ctx, o)
		result(err)
		return w, err
	}
	lw := &cache.ListWatch{
		ListWithContextFunc:  list,
		WatchFuncWithContext: watchFn,
	}
	// As client-go's generated informers do: the client says whether it
	// supports streaming lists (the fake clientset does not).
	inf := cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, s.client), &discoveryv1.EndpointSlice{}, 0, cache.Indexers{})
	if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) { result(err) }); err != nil {
		return err
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { signal() },
		UpdateFunc: func(any, any) { signal() },
		DeleteFunc: func(any) { signal() },
	}); err != nil {
		return err
	}
	wg.Go(func() { inf.RunWithContext(ctx) })

	var (
		last     []lb.Discovered
		sent     bool
		reported bool // a failure was pushed and not cleared
	)
	tick := time.NewTicker(recheck) // read only until the informer has synced
	defer tick.Stop()
	for {
		mu.Lock()
		f := failure
		mu.Unlock()
		force := false
		switch {
		case f != nil && !reported:
			reported = true
			push(lb.Update{Err: fmt.Errorf("%s: %w", s, f)})
		case f == nil && reported:
			reported, force = false, true
		}
		if !reported && inf.HasSynced() {
			ds := s.fromStore(inf.GetStore())
			if !sent || force || !slices.Equal(ds, last) {
				push(lb.Update{Targets: ds})
				last, sent = ds, true
			}
		}
		var tickC <-chan time.Time
		if !inf.HasSynced() {
			tickC = tick.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tickC:
		}
	}
}

// benign reports whether a watch error is client-go's normal course: a
// watch closed by the server, or a resource version too old (it lists
// again at once).
func benign(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
}

// fromStore returns the endpoints of the slices an informer holds.
func (s *Source) fromStore(st cache.Store) []lb.Discovered {
	var ss []*discoveryv1.EndpointSlice
	for _, o := range st.List() {
		if es, ok := o.(*discoveryv1.EndpointSlice); ok {
			ss = append(ss, es)
		}
	}
	return s.targets(ss)
}

// targets merges the endpoints of the Service's slices, sorted by address:
// an address that is serving in one slice and draining in another is
// serving.
func (s *Source) targets(ss []*discoveryv1.EndpointSlice) []lb.Discovered {
	byAddr := map[string]lb.Discovered{}
	for _, es := range ss {
		if es.Namespace != s.namespace || es.Labels[discoveryv1.LabelServiceName] != s.service {
			continue // the server filters too; a slice of another service never counts
		}
		if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		port, ok := s.portOf(es)
		if !ok {
			continue
		}
		for _, ep := range es.Endpoints {
			state, ok := stateOf(ep.Conditions)
			if !ok {
				continue
			}
			for _, a := range ep.Addresses {
				if net.ParseIP(a) == nil {
					continue
				}
				d := lb.Discovered{Addr: net.JoinHostPort(a, strconv.Itoa(port)), Weight: 1, State: state}
				if ep.Zone != nil {
					d.Zone = *ep.Zone
				}
				if old, seen := byAddr[d.Addr]; seen && old.State == lb.Serving {
					continue
				}
				byAddr[d.Addr] = d
			}
		}
	}
	out := make([]lb.Discovered, 0, len(byAddr))
	for _, d := range byAddr {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b lb.Discovered) int { return cmp.Compare(a.Addr, b.Addr) })
	return out
}

// portOf returns the slice's port chosen by WithPort.
func (s *Source) portOf(es *discoveryv1.EndpointSlice) (int, bool) {
	n, numeric := strconv.Atoi(s.port)
	if s.port == "" && len(es.Ports) == 1 && es.Ports[0].Port != nil {
		return int(*es.Ports[0].Port), true
	}
	for _, p := range es.Ports {
		if p.Port == nil {
			continue
		}
		if numeric == nil && int(*p.Port) == n || p.Name != nil && *p.Name == s.port && s.port != "" {
			return int(*p.Port), true
		}
	}
	return 0, false
}

// stateOf maps an endpoint's conditions to a state: ready → serving;
// serving and terminating → draining; otherwise not a target. Unknown
// conditions read as the API says: ready and serving when nil,
// terminating when set.
func stateOf(c discoveryv1.EndpointConditions) (lb.TargetState, bool) {
	ready := c.Ready == nil || *c.Ready
	serving := ready
	if c.Serving != nil {
		serving = *c.Serving
	}
	terminating := c.Terminating != nil && *c.Terminating
	switch {
	case ready && !terminating:
		return lb.Serving, true
	case serving && terminating:
		return lb.Draining, true
	}
	return 0, false
}

// Compile-time check that a Source is a Watcher.
var _ lb.Watcher = (*Source)(nil)
