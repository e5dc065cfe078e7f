package xdstest

import (
	"context"
	"net"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Server is go-control-plane's ADS server with a snapshot cache, serving
// on a loopback port.
type Server struct {
	// Cache holds the snapshots the server serves, by node ID.
	Cache cachev3.SnapshotCache
	// Addr is the server's address, host:port.
	Addr string

	grpc *grpc.Server
	wg   sync.WaitGroup

	mu    sync.Mutex // guards nacks, acks
	nacks []string   // error details of NACKs received
	acks  map[string]string
}

// Start starts a server on addr ("127.0.0.1:0" for a free port, or the
// address of a server that stopped, to restart it there).
func Start(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{Cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil), Addr: ln.Addr().String(), acks: map[string]string{}}
	cb := serverv3.CallbackFuncs{StreamRequestFunc: func(_ int64, req *discoverygrpc.DiscoveryRequest) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if d := req.GetErrorDetail(); d != nil {
			s.nacks = append(s.nacks, d.GetMessage())
		} else if req.GetResponseNonce() != "" {
			s.acks[req.GetTypeUrl()] = req.GetVersionInfo()
		}
		return nil
	}}
	srv := serverv3.NewServer(context.Background(), s.Cache, cb)
	s.grpc = grpc.NewServer()
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(s.grpc, srv)
	s.wg.Go(func() { _ = s.grpc.Serve(ln) })
	return s, nil
}

// Stop stops the server at once, breaking its streams.
func (s *Server) Stop() {
	s.grpc.Stop()
	s.wg.Wait()
}

// NACKs returns the error details of the NACKs received.
func (s *Server) NACKs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.nacks...)
}

// ACKed returns the version last ACKed for a type URL.
func (s *Server) ACKed(typeURL string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acks[typeURL]
}

// Set makes the snapshot of node from resources under a version.
func (s *Server) Set(node, version string, res Resources) error {
	snap, err := cachev3.NewSnapshot(version, map[resource.Type][]types.Resource{
		resource.ClusterType:  res.Clusters,
		resource.EndpointType: res.Endpoints,
		resource.ListenerType: res.Listeners,
		resource.RouteType:    res.Routes,
	})
	if err != nil {
		return err
	}
	return s.Cache.SetSnapshot(context.Background(), node, snap)
}

// Resources are a snapshot's resources by type.
type Resources struct {
	// Clusters, Endpoints, Listeners and Routes are the CDS, EDS, LDS and
	// RDS resources.
	Clusters, Endpoints, Listeners, Routes []types.Resource
}

var ads = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}, ResourceApiVersion: corev3.ApiVersion_V3}

// Cluster is an EDS cluster with a load-balancing policy.
func Cluster(name string, policy clusterv3.Cluster_LbPolicy) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads},
		LbPolicy:             policy,
	}
}

// Endpoint is one endpoint of an assignment.
type Endpoint struct {
	IP       string              // the endpoint's address
	Port     uint32              // its port
	Weight   uint32              // its load_balancing_weight; 0: none given
	Health   corev3.HealthStatus // its health_status
	Priority uint32              // its locality's priority
	Zone     string              // its locality's zone
}

// Assignment is a cluster's endpoints, a locality per zone and priority.
func Assignment(cluster string, eps ...Endpoint) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: cluster}
	type key struct {
		zone string
		prio uint32
	}
	locs := map[key]*endpointv3.LocalityLbEndpoints{}
	for _, e := range eps {
		k := key{e.Zone, e.Priority}
		loc := locs[k]
		if loc == nil {
			loc = &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{Zone: e.Zone}, Priority: e.Priority}
			locs[k] = loc
			cla.Endpoints = append(cla.Endpoints, loc)
		}
		le := &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: SocketAddress(e.IP, e.Port)}},
			HealthStatus:   e.Health,
		}
		if e.Weight > 0 {
			le.LoadBalancingWeight = wrapperspb.UInt32(e.Weight)
		}
		loc.LbEndpoints = append(loc.LbEndpoints, le)
	}
	return cla
}

// SocketAddress is a TCP address.
func SocketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

// HTTPListener is a listener with an HTTP connection manager whose routes
// come from RDS.
func HTTPListener(name, ip string, port uint32, routes string) *listenerv3.Listener {
	router, _ := anypb.New(&routerv3.Router{})
	hcm, _ := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix:     name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads, RouteConfigName: routes}},
		HttpFilters:    []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}}},
	})
	return listener(name, ip, port, &listenerv3.Filter{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm}})
}

// TCPListener is a listener with a tcp_proxy to a cluster.
func TCPListener(name, ip string, port uint32, cluster string) *listenerv3.Listener {
	tp, _ := anypb.New(&tcpproxyv3.TcpProxy{StatPrefix: name, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster}})
	return listener(name, ip, port, &listenerv3.Filter{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tp}})
}

func listener(name, ip string, port uint32, f *listenerv3.Filter) *listenerv3.Listener {
	return &listenerv3.Listener{Name: name, Address: SocketAddress(ip, port), FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{f}}}}
}

// Routes is a route configuration with one virtual host for any domain
// whose routes send path prefixes to clusters, in order.
func Routes(name string, prefixToCluster ...string) *routev3.RouteConfiguration {
	vh := &routev3.VirtualHost{Name: "any", Domains: []string{"*"}}
	for i := 0; i+1 < len(prefixToCluster); i += 2 {
		vh.Routes = append(vh.Routes, &routev3.Route{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefixToCluster[i]}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: prefixToCluster[i+1]}}},
		})
	}
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{vh}}
}
