package xds

import (
	"cmp"
	"fmt"
	"math"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/proxy"
)

// The type URLs of the resources a Client asks for. Their order is the
// order of the first requests, as xDS recommends: clusters before their
// endpoints, listeners before their routes.
const (
	clusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	endpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	routeType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
)

// typeName is a type URL's short name for logs and errors.
func typeName(url string) string {
	switch url {
	case clusterType:
		return "CDS"
	case endpointType:
		return "EDS"
	case listenerType:
		return "LDS"
	case routeType:
		return "RDS"
	}
	return url
}

// The filters a listener may hold.
const (
	tcpProxyFilter = "envoy.filters.network.tcp_proxy"
	hcmFilter      = "envoy.filters.network.http_connection_manager"
)

// cluster is a CDS resource as lbkit uses it.
type cluster struct {
	name   string
	algo   balancer.Algorithm
	eds    string          // the EDS resource of its endpoints; "" for a static cluster
	static []lb.Discovered // a static cluster's endpoints
	health *lb.HealthCheck // nil: no active checks (EDS health decides)
}

// listener is an LDS resource as lbkit uses it.
type listener struct {
	name, addr string
	tcp        string  // tcp_proxy's cluster; "" for HTTP
	rds        string  // the RDS resource of an HTTP listener's routes
	inline     *routes // an HTTP listener's inline route configuration
}

// routes is a route configuration as lbkit rules.
type routes struct {
	name     string
	rules    []lb.Rule
	clusters []string // every cluster the rules name, sorted
}

// fieldError is a resource that lbkit cannot express, naming the field.
type fieldError struct {
	kind, name, field, msg string
}

func (e *fieldError) Error() string {
	return fmt.Sprintf("%s %q: %s: %s", e.kind, e.name, e.field, e.msg)
}

func unsupported(kind, name, field, format string, a ...any) error {
	return &fieldError{kind: kind, name: name, field: field, msg: fmt.Sprintf(format, a...)}
}

// decodeCluster translates a CDS resource.
func decodeCluster(a *anypb.Any) (*cluster, error) {
	var c clusterv3.Cluster
	if err := a.UnmarshalTo(&c); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	name := c.GetName()
	if name == "" {
		return nil, unsupported("cluster", "", "name", "is empty")
	}
	out := &cluster{name: name}
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		out.algo = balancer.RoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		out.algo = balancer.LeastConnections
	case clusterv3.Cluster_RANDOM:
		out.algo = balancer.Random
	case clusterv3.Cluster_MAGLEV, clusterv3.Cluster_RING_HASH:
		out.algo = balancer.SourceIPHash // lbkit hashes the client's address
	default:
		return nil, unsupported("cluster", name, "lb_policy", "%s is not supported (ROUND_ROBIN, LEAST_REQUEST, RANDOM, MAGLEV, RING_HASH are)", c.GetLbPolicy())
	}
	if c.GetLoadBalancingPolicy() != nil {
		return nil, unsupported("cluster", name, "load_balancing_policy", "is not supported; use lb_policy")
	}
	if c.GetTransportSocket() != nil {
		return nil, unsupported("cluster", name, "transport_socket", "TLS to endpoints is not supported")
	}
	switch c.GetType() {
	case clusterv3.Cluster_EDS:
		out.eds = cmp.Or(c.GetEdsClusterConfig().GetServiceName(), name)
	case clusterv3.Cluster_STATIC:
		ds, err := decodeEndpoints("cluster", name, "load_assignment.", c.GetLoadAssignment())
		if err != nil {
			return nil, err
		}
		out.static = ds
	default:
		return nil, unsupported("cluster", name, "type", "%s is not supported (EDS and STATIC are)", c.GetType())
	}
	if hcs := c.GetHealthChecks(); len(hcs) > 0 {
		h, err := decodeHealth(name, hcs)
		if err != nil {
			return nil, err
		}
		out.health = h
	}
	return out, nil
}

// decodeHealth translates a cluster's first health check: TCP or HTTP.
func decodeHealth(name string, hcs []*corev3.HealthCheck) (*lb.HealthCheck, error) {
	if len(hcs) > 1 {
		return nil, unsupported("cluster", name, "health_checks", "more than one is not supported")
	}
	hc := hcs[0]
	h := &lb.HealthCheck{
		Interval:           hc.GetInterval().AsDuration(),
		Timeout:            hc.GetTimeout().AsDuration(),
		HealthyThreshold:   int(hc.GetHealthyThreshold().GetValue()),
		UnhealthyThreshold: int(hc.GetUnhealthyThreshold().GetValue()),
	}
	switch {
	case hc.GetTcpHealthCheck() != nil:
		if len(hc.GetTcpHealthCheck().GetSend().GetText()) > 0 || len(hc.GetTcpHealthCheck().GetReceive()) > 0 {
			return nil, unsupported("cluster", name, "health_checks[0].tcp_health_check", "send and receive are not supported")
		}
		h.Protocol = lb.TCP
	case hc.GetHttpHealthCheck() != nil:
		h.Protocol = lb.HTTP
		h.Path = hc.GetHttpHealthCheck().GetPath()
		h.Host = hc.GetHttpHealthCheck().GetHost()
	default:
		return nil, unsupported("cluster", name, "health_checks[0]", "only tcp_health_check and http_health_check are supported")
	}
	return h, nil
}

// decodeAssignment translates an EDS resource.
func decodeAssignment(a *anypb.Any) (string, []lb.Discovered, error) {
	var cla endpointv3.ClusterLoadAssignment
	if err := a.UnmarshalTo(&cla); err != nil {
		return "", nil, fmt.Errorf("cluster load assignment: %w", err)
	}
	name := cla.GetClusterName()
	if name == "" {
		return "", nil, unsupported("cluster load assignment", "", "cluster_name", "is empty")
	}
	ds, err := decodeEndpoints("cluster load assignment", name, "", &cla)
	return name, ds, err
}

// decodeEndpoints translates the endpoints of an assignment: HEALTHY,
// UNKNOWN and DEGRADED serve; DRAINING drains; UNHEALTHY and TIMEOUT are
// left out. Weights are the endpoints' (the locality's weight is not
// applied); priorities and zones are the localities'.
func decodeEndpoints(kind, name, prefix string, cla *endpointv3.ClusterLoadAssignment) ([]lb.Discovered, error) {
	var out []lb.Discovered
	for i, loc := range cla.GetEndpoints() {
		zone := strings.Join(slices.DeleteFunc([]string{loc.GetLocality().GetRegion(), loc.GetLocality().GetZone(), loc.GetLocality().GetSubZone()}, func(s string) bool { return s == "" }), "/")
		for j, le := range loc.GetLbEndpoints() {
			field := fmt.Sprintf("%sendpoints[%d].lb_endpoints[%d]", prefix, i, j)
			sa := le.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil {
				return nil, unsupported(kind, name, field+".endpoint.address", "only socket addresses are supported")
			}
			if sa.GetProtocol() != corev3.SocketAddress_TCP {
				return nil, unsupported(kind, name, field+".endpoint.address.socket_address.protocol", "%s is not supported", sa.GetProtocol())
			}
			ip := net.ParseIP(sa.GetAddress())
			port := sa.GetPortValue()
			if ip == nil || port == 0 || port > 65535 {
				return nil, unsupported(kind, name, field+".endpoint.address.socket_address", "%s port %d is not an IP address and port", sa.GetAddress(), port)
			}
			d := lb.Discovered{
				Addr:     net.JoinHostPort(ip.String(), strconv.Itoa(int(port))),
				Weight:   int(min(uint64(cmp.Or(le.GetLoadBalancingWeight().GetValue(), 1)), math.MaxInt32)),
				Zone:     zone,
				Priority: int(loc.GetPriority()),
			}
			switch le.GetHealthStatus() {
			case corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY, corev3.HealthStatus_DEGRADED:
			case corev3.HealthStatus_DRAINING:
				d.State = lb.Draining
			default: // UNHEALTHY, TIMEOUT
				continue
			}
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b lb.Discovered) int { return cmp.Compare(a.Addr, b.Addr) })
	return out, nil
}

// decodeListener translates an LDS resource: one filter chain holding a
// tcp_proxy to a cluster, or an HTTP connection manager with routes.
func decodeListener(a *anypb.Any) (*listener, error) {
	var l listenerv3.Listener
	if err := a.UnmarshalTo(&l); err != nil {
		return nil, fmt.Errorf("listener: %w", err)
	}
	name := l.GetName()
	if name == "" {
		return nil, unsupported("listener", "", "name", "is empty")
	}
	bad := func(field, format string, a ...any) error { return unsupported("listener", name, field, format, a...) }
	sa := l.GetAddress().GetSocketAddress()
	if sa == nil || sa.GetProtocol() != corev3.SocketAddress_TCP {
		return nil, bad("address", "only TCP socket addresses are supported")
	}
	if net.ParseIP(sa.GetAddress()) == nil {
		return nil, bad("address.socket_address.address", "%q is not an IP address", sa.GetAddress())
	}
	out := &listener{name: name, addr: net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))}
	if len(l.GetListenerFilters()) > 0 {
		return nil, bad("listener_filters", "are not supported")
	}
	if l.GetDefaultFilterChain() != nil {
		return nil, bad("default_filter_chain", "is not supported")
	}
	if len(l.GetFilterChains()) != 1 {
		return nil, bad("filter_chains", "want exactly one, got %d", len(l.GetFilterChains()))
	}
	fc := l.GetFilterChains()[0]
	if fc.GetFilterChainMatch() != nil {
		return nil, bad("filter_chains[0].filter_chain_match", "is not supported")
	}
	if fc.GetTransportSocket() != nil {
		return nil, bad("filter_chains[0].transport_socket", "TLS termination from xDS is not supported")
	}
	if len(fc.GetFilters()) != 1 {
		return nil, bad("filter_chains[0].filters", "want exactly one network filter (tcp_proxy or http_connection_manager), got %d", len(fc.GetFilters()))
	}
	f := fc.GetFilters()[0]
	switch f.GetName() {
	case tcpProxyFilter:
		var tp tcpproxyv3.TcpProxy
		if err := f.GetTypedConfig().UnmarshalTo(&tp); err != nil {
			return nil, bad("filter_chains[0].filters[0].typed_config", "%v", err)
		}
		if tp.GetWeightedClusters() != nil {
			return nil, bad("filter_chains[0].filters[0].typed_config.weighted_clusters", "is not supported: a TCP listener forwards to one cluster")
		}
		if tp.GetCluster() == "" {
			return nil, bad("filter_chains[0].filters[0].typed_config.cluster", "is empty")
		}
		out.tcp = tp.GetCluster()
	case hcmFilter:
		var hcm hcmv3.HttpConnectionManager
		if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
			return nil, bad("filter_chains[0].filters[0].typed_config", "%v", err)
		}
		switch {
		case hcm.GetRds() != nil:
			if hcm.GetRds().GetRouteConfigName() == "" {
				return nil, bad("filter_chains[0].filters[0].typed_config.rds.route_config_name", "is empty")
			}
			out.rds = hcm.GetRds().GetRouteConfigName()
		case hcm.GetRouteConfig() != nil:
			rs, err := translateRoutes(hcm.GetRouteConfig())
			if err != nil {
				return nil, err
			}
			out.inline = rs
		default:
			return nil, bad("filter_chains[0].filters[0].typed_config", "scoped_routes are not supported; use rds or route_config")
		}
	default:
		return nil, bad("filter_chains[0].filters[0].name", "%q is not supported (%s, %s are)", f.GetName(), tcpProxyFilter, hcmFilter)
	}
	return out, nil
}

// decodeRoutes translates an RDS resource.
func decodeRoutes(a *anypb.Any) (*routes, error) {
	var rc routev3.RouteConfiguration
	if err := a.UnmarshalTo(&rc); err != nil {
		return nil, fmt.Errorf("route configuration: %w", err)
	}
	if rc.GetName() == "" {
		return nil, unsupported("route configuration", "", "name", "is empty")
	}
	return translateRoutes(&rc)
}

// maxSplit is the largest weight of lbkit's Split.
const maxSplit = 1000

// translateRoutes turns virtual hosts and routes into lbkit rules that
// match as Envoy does: a request's host chooses the virtual host (exact
// domains first, then suffix wildcards, longest first, then "*"), and
// its routes are tried in order; a request no route of its virtual host
// matches is answered 404, as Envoy does, not passed to another host's
// routes.
func translateRoutes(rc *routev3.RouteConfiguration) (*routes, error) {
	name := rc.GetName()
	bad := func(field, format string, a ...any) error {
		return unsupported("route configuration", name, field, format, a...)
	}
	type hostRoutes struct {
		domain string // lbkit's form
		rank   int    // 0 exact, 1 suffix wildcard, 2 any
		vh     int
	}
	var hosts []hostRoutes
	for i, vh := range rc.GetVirtualHosts() {
		for j, d := range vh.GetDomains() {
			d = strings.ToLower(d)
			if h, p, err := net.SplitHostPort(d); err == nil && p != "" {
				return nil, bad(fmt.Sprintf("virtual_hosts[%d].domains[%d]", i, j), "%q: domains with a port are not supported (lbkit matches the host without its port)", d+"; host "+h)
			}
			switch {
			case d == "*":
				hosts = append(hosts, hostRoutes{"", 2, i})
			case strings.HasPrefix(d, "*.") && !strings.Contains(d[2:], "*"):
				hosts = append(hosts, hostRoutes{d, 1, i})
			case !strings.Contains(d, "*"):
				hosts = append(hosts, hostRoutes{d, 0, i})
			default:
				return nil, bad(fmt.Sprintf("virtual_hosts[%d].domains[%d]", i, j), "%q: only exact names, *.suffix and * are supported", d)
			}
		}
	}
	slices.SortStableFunc(hosts, func(a, b hostRoutes) int {
		if c := cmp.Compare(a.rank, b.rank); c != 0 {
			return c
		}
		return cmp.Compare(len(b.domain), len(a.domain))
	})
	out := &routes{name: name}
	seen := map[string]bool{}
	prio := 0
	for _, h := range hosts {
		vh := rc.GetVirtualHosts()[h.vh]
		catchAll := false
		for k, r := range vh.GetRoutes() {
			field := fmt.Sprintf("virtual_hosts[%d].routes[%d]", h.vh, k)
			rule, err := translateRoute(r, field, bad)
			if err != nil {
				return nil, err
			}
			rule.Host, rule.Priority = h.domain, prio
			rule.Name = fmt.Sprintf("%s/%s/%d", name, cmp.Or(vh.GetName(), strconv.Itoa(h.vh)), k)
			prio++
			if rule.Path == "" {
				catchAll = true
			}
			out.rules = append(out.rules, rule)
			if rule.Forward != "" {
				seen[rule.Forward] = true
			}
			for _, s := range rule.Split {
				seen[s.Group] = true
			}
			if catchAll {
				break // later routes are never reached; lbkit would refuse the duplicate
			}
		}
		if !catchAll {
			out.rules = append(out.rules, lb.Rule{Name: fmt.Sprintf("%s/%s/no-route", name, cmp.Or(vh.GetName(), strconv.Itoa(h.vh))),
				Host: h.domain, Priority: prio, Fixed: &proxy.FixedResponse{Status: 404, Body: "no route\n"}})
			prio++
		}
	}
	for c := range seen {
		out.clusters = append(out.clusters, c)
	}
	slices.Sort(out.clusters)
	return out, nil
}

// translateRoute translates one route: its match (prefix, path or safe
// regex, case-sensitive, nothing else) and its action (a cluster or
// weighted clusters, no rewriting).
func translateRoute(r *routev3.Route, field string, bad func(string, string, ...any) error) (lb.Rule, error) {
	var rule lb.Rule
	m := r.GetMatch()
	if cs := m.GetCaseSensitive(); cs != nil && !cs.GetValue() {
		return rule, bad(field+".match.case_sensitive", "false is not supported")
	}
	if len(m.GetHeaders()) > 0 {
		return rule, bad(field+".match.headers", "are not supported")
	}
	if len(m.GetQueryParameters()) > 0 {
		return rule, bad(field+".match.query_parameters", "are not supported")
	}
	if m.GetGrpc() != nil || m.GetRuntimeFraction() != nil || m.GetTlsContext() != nil || len(m.GetDynamicMetadata()) > 0 {
		return rule, bad(field+".match", "only prefix, path and safe_regex are supported")
	}
	switch {
	case m.GetPrefix() != "" || m.GetPathSpecifier() == nil:
		p := m.GetPrefix()
		switch {
		case p == "" || p == "/":
			rule.Path = ""
		case strings.HasSuffix(p, "/"):
			rule.Path = p + "*"
		default:
			rule.Path = "~^" + regexp.QuoteMeta(p)
		}
	case m.GetPath() != "":
		rule.Path = m.GetPath()
	case m.GetSafeRegex() != nil:
		re := m.GetSafeRegex().GetRegex()
		if _, err := regexp.Compile(re); err != nil {
			return rule, bad(field+".match.safe_regex.regex", "%v", err)
		}
		rule.Path = "~^(?:" + re + ")$"
	default:
		return rule, bad(field+".match", "only prefix, path and safe_regex are supported")
	}
	if r.GetRedirect() != nil || r.GetDirectResponse() != nil || r.GetRoute() == nil {
		return rule, bad(field, "only route actions are supported (not redirect, direct_response)")
	}
	ra := r.GetRoute()
	switch {
	case ra.GetPrefixRewrite() != "" || ra.GetRegexRewrite() != nil:
		return rule, bad(field+".route", "path rewriting is not supported")
	case ra.GetHostRewriteLiteral() != "" || ra.GetAutoHostRewrite() != nil:
		return rule, bad(field+".route", "host rewriting is not supported")
	}
	switch {
	case ra.GetCluster() != "":
		rule.Forward = ra.GetCluster()
	case ra.GetWeightedClusters() != nil:
		wcs := ra.GetWeightedClusters().GetClusters()
		if len(wcs) == 0 {
			return rule, bad(field+".route.weighted_clusters.clusters", "is empty")
		}
		total := uint64(0)
		for _, wc := range wcs {
			total += uint64(wc.GetWeight().GetValue())
		}
		if total == 0 {
			return rule, bad(field+".route.weighted_clusters", "every weight is 0")
		}
		for i, wc := range wcs {
			if wc.GetName() == "" {
				return rule, bad(fmt.Sprintf("%s.route.weighted_clusters.clusters[%d].name", field, i), "is empty (cluster_header is not supported)")
			}
			w := uint64(wc.GetWeight().GetValue())
			if total > maxSplit { // lbkit's weights run to 1000: scale, keeping every share above 0
				w = max((w*maxSplit+total/2)/total, min(w, 1))
			}
			rule.Split = append(rule.Split, lb.GroupWeight{Group: wc.GetName(), Weight: int(w)})
		}
	default:
		return rule, bad(field+".route", "cluster_header and cluster_specifier_plugin are not supported")
	}
	return rule, nil
}

// groupProtocols decides each cluster's protocol from the listeners that
// use it: HTTP for clusters of HTTP routes, TCP otherwise.
func groupProtocols(ls map[string]*listener, rs map[string]*routes) map[string]lb.Protocol {
	out := map[string]lb.Protocol{}
	for _, l := range ls {
		if l.tcp != "" {
			if _, ok := out[l.tcp]; !ok {
				out[l.tcp] = lb.TCP
			}
			continue
		}
		r := l.inline
		if r == nil {
			r = rs[l.rds]
		}
		if r != nil {
			for _, c := range r.clusters {
				out[c] = lb.HTTP
			}
		}
	}
	return out
}
