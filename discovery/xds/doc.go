// Package xds is an xDS client for lbkit: any xDS control plane (Istio,
// Envoy Gateway, a go-control-plane server of your own) drives lbkit nodes
// with the listeners, routes, clusters and endpoints it already serves to
// Envoy.
//
// It is its own Go module (github.com/lbkit/lbkit/discovery/xds), so that
// lbkit's core never downloads gRPC. gRPC's own xDS client is internal to
// grpc-go; this one is written for lbkit's model.
//
// A Client holds one aggregated (ADS) state-of-the-world stream to the
// first server of a Bootstrap (the JSON file Envoy and gRPC read): it asks
// for every cluster (CDS) and listener (LDS), then for the endpoints (EDS)
// and routes (RDS) they name; it keeps a version and nonce per type, ACKs
// what lbkit accepts, NACKs what it cannot express (naming the field) or
// what lbkit's validation refuses (with lbkit's error) while the last good
// configuration stays, comes back with a jittered exponential back-off when
// the stream is lost, and takes endpoint or route resources that never come
// as not existing after a timeout.
//
//	boot, err := xds.LoadBootstrap("/etc/lbd/xds.json")
//	...
//	l, _ := lb.New()
//	l.Start()
//	c, err := xds.New(boot, xds.WithApply(xds.Reconfigure(l)))
//	c.Start()
//	defer c.Close()
//
// Listeners, routes and clusters become lb options given to
// LoadBalancer.Reconfigure; endpoints reach each cluster's target group
// through Client.Cluster, an lb.Watcher, so that an EDS change (a DRAINING
// endpoint, a new one) applies at once. docs/guides/xds.md has the mapping
// of xDS fields to lbkit's.
package xds
