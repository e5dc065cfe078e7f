package xds

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/discovery/xds/xdstest"
	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/proxy"
)

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	require.NoError(t, err)
	return a
}

func TestDecodeCluster(t *testing.T) {
	for policy, want := range map[clusterv3.Cluster_LbPolicy]balancer.Algorithm{
		clusterv3.Cluster_ROUND_ROBIN:   balancer.RoundRobin,
		clusterv3.Cluster_LEAST_REQUEST: balancer.LeastConnections,
		clusterv3.Cluster_RANDOM:        balancer.Random,
		clusterv3.Cluster_MAGLEV:        balancer.SourceIPHash,
		clusterv3.Cluster_RING_HASH:     balancer.SourceIPHash,
	} {
		cl, err := decodeCluster(mustAny(t, xdstest.Cluster("web", policy)))
		require.NoError(t, err)
		assert.Equal(t, want, cl.algo, "%s", policy)
		assert.Equal(t, "web", cl.eds)
	}
	_, err := decodeCluster(mustAny(t, xdstest.Cluster("web", clusterv3.Cluster_CLUSTER_PROVIDED)))
	assert.EqualError(t, err, `cluster "web": lb_policy: CLUSTER_PROVIDED is not supported (ROUND_ROBIN, LEAST_REQUEST, RANDOM, MAGLEV, RING_HASH are)`)
	dns := xdstest.Cluster("web", clusterv3.Cluster_ROUND_ROBIN)
	dns.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
	_, err = decodeCluster(mustAny(t, dns))
	assert.EqualError(t, err, `cluster "web": type: STRICT_DNS is not supported (EDS and STATIC are)`)
}

func TestDecodeAssignment(t *testing.T) {
	cla := xdstest.Assignment("web",
		xdstest.Endpoint{IP: "10.0.0.1", Port: 80, Weight: 3000, Zone: "a"},
		xdstest.Endpoint{IP: "10.0.0.2", Port: 80, Health: corev3.HealthStatus_DRAINING, Zone: "a"},
		xdstest.Endpoint{IP: "10.0.0.3", Port: 80, Health: corev3.HealthStatus_UNHEALTHY},
		xdstest.Endpoint{IP: "10.0.0.4", Port: 80, Health: corev3.HealthStatus_TIMEOUT},
		xdstest.Endpoint{IP: "fd00::5", Port: 80, Health: corev3.HealthStatus_DEGRADED, Priority: 1, Zone: "b"},
	)
	name, ds, err := decodeAssignment(mustAny(t, cla))
	require.NoError(t, err)
	assert.Equal(t, "web", name)
	assert.Equal(t, []lb.Discovered{
		{Addr: "10.0.0.1:80", Weight: 3000, Zone: "a"},
		{Addr: "10.0.0.2:80", Weight: 1, Zone: "a", State: lb.Draining},
		{Addr: "[fd00::5]:80", Weight: 1, Zone: "b", Priority: 1},
	}, ds, "UNHEALTHY and TIMEOUT left out; weights normalised later by the group")
}

func TestDecodeListener(t *testing.T) {
	l, err := decodeListener(mustAny(t, xdstest.TCPListener("db", "127.0.0.1", 5432, "pg")))
	require.NoError(t, err)
	assert.Equal(t, &listener{name: "db", addr: "127.0.0.1:5432", tcp: "pg"}, l)
	l, err = decodeListener(mustAny(t, xdstest.HTTPListener("front", "::1", 80, "routes")))
	require.NoError(t, err)
	assert.Equal(t, &listener{name: "front", addr: "[::1]:80", rds: "routes"}, l)

	bad := xdstest.TCPListener("db", "127.0.0.1", 5432, "pg")
	bad.FilterChains[0].Filters[0].Name = "envoy.filters.network.redis_proxy"
	_, err = decodeListener(mustAny(t, bad))
	assert.ErrorContains(t, err, `listener "db": filter_chains[0].filters[0].name: "envoy.filters.network.redis_proxy" is not supported`)
	two := xdstest.TCPListener("db", "127.0.0.1", 5432, "pg")
	two.FilterChains = append(two.FilterChains, &listenerv3.FilterChain{})
	_, err = decodeListener(mustAny(t, two))
	assert.EqualError(t, err, `listener "db": filter_chains: want exactly one, got 2`)
}

func TestTranslateRoutes(t *testing.T) {
	route := func(m *routev3.RouteMatch, a *routev3.RouteAction) *routev3.Route {
		return &routev3.Route{Match: m, Action: &routev3.Route_Route{Route: a}}
	}
	to := func(c string) *routev3.RouteAction {
		return &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: c}}
	}
	prefix := func(p string) *routev3.RouteMatch {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
	}
	rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{
		{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{route(prefix("/"), to("web"))}},
		{Name: "api", Domains: []string{"api.example.com", "*.api.example.com"}, Routes: []*routev3.Route{
			route(prefix("/v1/"), to("v1")),
			route(prefix("/v2"), &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{
				Clusters: []*routev3.WeightedCluster_ClusterWeight{{Name: "v2", Weight: wrapperspb.UInt32(9000)}, {Name: "v2-canary", Weight: wrapperspb.UInt32(1000)}}}}}),
			route(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/health"}}, to("v1")),
		}},
	}}
	r, err := translateRoutes(rc)
	require.NoError(t, err)
	notFound := &proxy.FixedResponse{Status: 404, Body: "no route\n"}
	assert.Equal(t, []lb.Rule{
		{Name: "r/api/0", Host: "api.example.com", Priority: 0, Path: "/v1/*", Forward: "v1"},
		{Name: "r/api/1", Host: "api.example.com", Priority: 1, Path: "~^/v2", Split: []lb.GroupWeight{{Group: "v2", Weight: 900}, {Group: "v2-canary", Weight: 100}}},
		{Name: "r/api/2", Host: "api.example.com", Priority: 2, Path: "/health", Forward: "v1"},
		{Name: "r/api/no-route", Host: "api.example.com", Priority: 3, Fixed: notFound},
		{Name: "r/api/0", Host: "*.api.example.com", Priority: 4, Path: "/v1/*", Forward: "v1"},
		{Name: "r/api/1", Host: "*.api.example.com", Priority: 5, Path: "~^/v2", Split: []lb.GroupWeight{{Group: "v2", Weight: 900}, {Group: "v2-canary", Weight: 100}}},
		{Name: "r/api/2", Host: "*.api.example.com", Priority: 6, Path: "/health", Forward: "v1"},
		{Name: "r/api/no-route", Host: "*.api.example.com", Priority: 7, Fixed: notFound},
		{Name: "r/any/0", Host: "", Priority: 8, Path: "", Forward: "web"},
	}, r.rules, "exact hosts, then wildcards, then any; a host's unmatched requests get 404, as in Envoy")
	assert.Equal(t, []string{"v1", "v2", "v2-canary", "web"}, r.clusters)

	rc.VirtualHosts[0].Routes[0].Match.Headers = []*routev3.HeaderMatcher{{Name: "x-canary"}}
	_, err = translateRoutes(rc)
	assert.EqualError(t, err, `route configuration "r": virtual_hosts[0].routes[0].match.headers: are not supported`)
}

func TestParseBootstrap(t *testing.T) {
	b, err := ParseBootstrap([]byte(`{
		"xds_servers": [{"server_uri": "127.0.0.1:18000", "channel_creds": [{"type": "google_default"}, {"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": "edge-1", "cluster": "edge", "locality": {"zone": "eu-1a"}, "metadata": {"role": "edge"}}
	}`))
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:18000", b.Servers[0].URI)
	n := b.Node.node()
	assert.Equal(t, "edge-1", n.GetId())
	assert.Equal(t, "eu-1a", n.GetLocality().GetZone())
	assert.Equal(t, "edge", n.GetMetadata().AsMap()["role"])

	_, err = ParseBootstrap([]byte(`{"xds_servers": [{"server_uri": "x:1", "channel_creds": [{"type": "google_default"}]}], "node": {}}`))
	assert.ErrorContains(t, err, "none of the types is insecure or tls")
	assert.ErrorContains(t, err, "node.id is empty")
}
