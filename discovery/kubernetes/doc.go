// Package kubernetes is an lbkit discovery source that follows a
// Kubernetes Service through its EndpointSlices, as Traefik and HAProxy's
// ingress controller do: a target group of lbkit's gets the Service's
// endpoints as targets and follows every change at once, draining the
// endpoints Kubernetes is terminating instead of dropping them.
//
// It is its own Go module (github.com/lbkit/lbkit/discovery/kubernetes), so
// that lbkit's core never downloads client-go.
//
// A Source watches the EndpointSlices of one Service with a client-go
// informer limited to the Service's namespace and to the label
// kubernetes.io/service-name (checked again on every slice), merges every
// slice of the Service, and maps each endpoint to an lb.Discovered:
//
//   - ready → serving;
//   - serving and terminating → draining (no new traffic; established
//     connections and sticky sessions continue for the target group's
//     deregistration delay);
//   - anything else (not serving) → left out, so deregistered.
//
// The port is the Service port's name or number (WithPort), looked up in
// each slice's ports; IPv4 and IPv6 slices are both followed; FQDN slices
// are not. Each endpoint's zone is carried to lbkit's diagnosis.
//
// A Source is an lb.Watcher: lb.WithDiscovery(src, interval) makes a group
// follow it. When the API server cannot be reached the group keeps the last
// list and Diagnose says since when; client-go reconnects by itself.
//
//	src, err := kubernetes.New("web", kubernetes.WithNamespace("shop"), kubernetes.WithPort("http"))
//	if err != nil { ... }
//	l, err := lb.New(
//		lb.WithListener("front", lb.HTTP, ":80", lb.WithForwardTo("web")),
//		lb.WithTargetGroup("web", lb.HTTP, lb.WithDiscovery(src, 0)),
//	)
//
// FromConfig builds a Source from a YAML section, for a daemon that
// registers it with config.WithSourceFactory("kubernetes", kubernetes.FromConfig).
package kubernetes
