package metrics_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/flowtable"
	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/metrics"
	"github.com/lbkit/lbkit/proxy"
)

// fixed is a Source with a fixed snapshot.
type fixed lb.Stats

func (f fixed) Stats() lb.Stats { return lb.Stats(f) }

func snapshot() fixed {
	return fixed{
		Flows: flowtable.Stats{
			TCP:      flowtable.Counters{NewFlowCount: 10, ActiveFlowCount: 2, RejectedFlowCount: 3, RejectedSourceFlowCount: 1, ExpiredFlowCount: 4},
			UDP:      flowtable.Counters{NewFlowCount: 5, ActiveFlowCount: 1},
			MaxFlows: 100,
		},
		Listeners: []lb.ListenerStats{
			{Name: "web", Protocol: lb.HTTP, Addr: "127.0.0.1:8080", HTTP: &proxy.HTTPStats{
				Connections: 7, ActiveConnections: 1, Status: [5]uint64{0, 40, 1, 2, 3}, UpstreamStatus: [5]uint64{0, 40, 1, 2, 0},
				NoTarget: 3, Retries: 2,
			}},
			{Name: "db", Protocol: lb.TCP, Addr: "127.0.0.1:5432", TCP: &proxy.TCPStats{Accepted: 10, Active: 2, BytesIn: 100, BytesOut: 2000, Denied: 1, IdleResets: 4}},
			{Name: "dns", Protocol: lb.UDP, Addr: "127.0.0.1:53", UDP: &proxy.UDPStats{DatagramsIn: 9, DatagramsOut: 8, BytesIn: 90, BytesOut: 80, Flows: 5, ActiveFlows: 1}},
		},
		Groups: []lb.GroupStats{{
			Name: "app", Protocol: lb.HTTP, Healthy: 1, Unhealthy: 1, NoTarget: 3,
			Targets: []lb.TargetStats{
				{ID: "a", Addr: "127.0.0.1:9001", Weight: 5, Healthy: true, Serving: true,
					Counters: proxy.TargetStats{Requests: 43, Status: [5]uint64{0, 40, 1, 2, 0}, AvgResponseTime: 1500 * time.Microsecond}},
				{ID: "b", Addr: "127.0.0.1:9002", Weight: 1, Ejected: true, DrainUntil: time.Unix(1e9, 0)},
			},
		}},
	}
}

// TestCollectExact checks metrics made from a known snapshot, value by
// value.
func TestCollectExact(t *testing.T) {
	c := metrics.NewCollector(snapshot())
	err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP lbkit_flows_new_total Flows (TCP connections, UDP client flows) made since start (NewFlowCount).
# TYPE lbkit_flows_new_total counter
lbkit_flows_new_total{protocol="tcp"} 10
lbkit_flows_new_total{protocol="udp"} 5
# HELP lbkit_flows_rejected_total New flows refused by the flow table: full (RejectedFlowCount) or the source at its limit.
# TYPE lbkit_flows_rejected_total counter
lbkit_flows_rejected_total{protocol="tcp",reason="source_limit"} 1
lbkit_flows_rejected_total{protocol="tcp",reason="table_full"} 3
lbkit_flows_rejected_total{protocol="udp",reason="source_limit"} 0
lbkit_flows_rejected_total{protocol="udp",reason="table_full"} 0
# HELP lbkit_http_requests_total HTTP requests answered to clients, by the class of the status the load balancer sent (client side).
# TYPE lbkit_http_requests_total counter
lbkit_http_requests_total{code_class="1xx",listener="web"} 0
lbkit_http_requests_total{code_class="2xx",listener="web"} 40
lbkit_http_requests_total{code_class="3xx",listener="web"} 1
lbkit_http_requests_total{code_class="4xx",listener="web"} 2
lbkit_http_requests_total{code_class="5xx",listener="web"} 3
# HELP lbkit_http_target_responses_total HTTP responses received from targets, by status class (target side).
# TYPE lbkit_http_target_responses_total counter
lbkit_http_target_responses_total{code_class="1xx",listener="web"} 0
lbkit_http_target_responses_total{code_class="2xx",listener="web"} 40
lbkit_http_target_responses_total{code_class="3xx",listener="web"} 1
lbkit_http_target_responses_total{code_class="4xx",listener="web"} 2
lbkit_http_target_responses_total{code_class="5xx",listener="web"} 0
# HELP lbkit_listener_sent_bytes_total Bytes sent to clients from targets (tcp, tls, udp).
# TYPE lbkit_listener_sent_bytes_total counter
lbkit_listener_sent_bytes_total{listener="db",protocol="tcp"} 2000
lbkit_listener_sent_bytes_total{listener="dns",protocol="udp"} 80
# HELP lbkit_group_targets Targets of a group by health state (healthy: checks pass and not ejected), whatever their weight.
# TYPE lbkit_group_targets gauge
lbkit_group_targets{group="app",state="healthy"} 1
lbkit_group_targets{group="app",state="unhealthy"} 1
# HELP lbkit_target_serving 1 when the target receives new traffic: healthy, not ejected, weight above 0, not draining.
# TYPE lbkit_target_serving gauge
lbkit_target_serving{group="app",target="a"} 1
lbkit_target_serving{group="app",target="b"} 0
# HELP lbkit_target_draining 1 while the target is deregistering (its established connections drain).
# TYPE lbkit_target_draining gauge
lbkit_target_draining{group="app",target="a"} 0
lbkit_target_draining{group="app",target="b"} 1
# HELP lbkit_target_weight The target's weight, 0..100 (0: no new traffic).
# TYPE lbkit_target_weight gauge
lbkit_target_weight{group="app",target="a"} 5
lbkit_target_weight{group="app",target="b"} 1
# HELP lbkit_target_response_time_average_seconds Mean time from sending a request to the target to receiving its response header, over every response since the target's counters started.
# TYPE lbkit_target_response_time_average_seconds gauge
lbkit_target_response_time_average_seconds{group="app",target="a"} 0.0015
lbkit_target_response_time_average_seconds{group="app",target="b"} 0
`), "lbkit_flows_new_total", "lbkit_flows_rejected_total", "lbkit_http_requests_total", "lbkit_http_target_responses_total",
		"lbkit_listener_sent_bytes_total", "lbkit_group_targets", "lbkit_target_serving", "lbkit_target_draining",
		"lbkit_target_weight", "lbkit_target_response_time_average_seconds")
	require.NoError(t, err)
}

// TestLint checks every metric against Prometheus's naming conventions,
// and that every metric sent is described.
func TestLint(t *testing.T) {
	problems, err := testutil.CollectAndLint(metrics.NewCollector(snapshot()))
	require.NoError(t, err)
	assert.Empty(t, problems)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(metrics.NewCollector(snapshot())))
	_, err = reg.Gather()
	require.NoError(t, err, "the pedantic registry checks metrics against their descriptions")
}

// TestConstLabels checks that two load balancers share a registry when
// each has its own labels, and the namespace option.
func TestConstLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(metrics.NewCollector(snapshot(), metrics.WithConstLabels(prometheus.Labels{"lb": "a"}))))
	require.NoError(t, reg.Register(metrics.NewCollector(snapshot(), metrics.WithConstLabels(prometheus.Labels{"lb": "b"}))))
	n, err := testutil.GatherAndCount(reg, "lbkit_flows_max")
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	assert.Equal(t, 1, testutil.CollectAndCount(metrics.NewCollector(snapshot(), metrics.WithNamespace("edge")), "edge_flows_max"))
}

// TestHandlerLive scrapes a running load balancer after real traffic and
// reads the exposition back with Prometheus's own parser.
func TestHandlerLive(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer app.Close()
	l, err := lb.New(
		lb.WithLogger(slog.New(slog.DiscardHandler)),
		lb.WithListener("web", lb.HTTP, "127.0.0.1:0", lb.WithForwardTo("app")),
		lb.WithTargetGroup("app", lb.HTTP, lb.WithTarget(app.Listener.Addr().String(), lb.WithTargetID("app-1")), lb.WithoutHealthCheck()),
	)
	require.NoError(t, err)
	require.NoError(t, l.Start())
	defer l.Close()
	addr, _ := l.Addr("web")
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	for _, path := range []string{"/", "/", "/", "/missing"} {
		resp, err := client.Get("http://" + addr.String() + path)
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	// A request is counted once its exchange ends, which may be just
	// after the client has read the last byte of the answer.
	require.Eventually(t, func() bool {
		var n uint64
		for _, c := range l.Stats().Listeners[0].HTTP.Status {
			n += c
		}
		return n == 4
	}, 10*time.Second, time.Millisecond)

	srv := httptest.NewServer(metrics.Handler(l))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)

	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		mf, ok := families[name]
		require.True(t, ok, "no family %s", name)
		for _, m := range mf.GetMetric() {
			if matches(m, labels) {
				if c := m.GetCounter(); c != nil {
					return c.GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
		t.Fatalf("no %s%v", name, labels)
		return 0
	}
	assert.Equal(t, 3.0, value("lbkit_http_requests_total", map[string]string{"listener": "web", "code_class": "2xx"}))
	assert.Equal(t, 1.0, value("lbkit_http_requests_total", map[string]string{"listener": "web", "code_class": "4xx"}))
	assert.Equal(t, 3.0, value("lbkit_target_responses_total", map[string]string{"group": "app", "target": "app-1", "code_class": "2xx"}))
	assert.Equal(t, 4.0, value("lbkit_target_requests_total", map[string]string{"group": "app", "target": "app-1"}))
	assert.Equal(t, 1.0, value("lbkit_target_serving", map[string]string{"group": "app", "target": "app-1"}))
	assert.Equal(t, 1.0, value("lbkit_listener_info", map[string]string{"listener": "web", "protocol": "http", "address": addr.String()}))
	assert.Greater(t, value("lbkit_target_response_time_average_seconds", map[string]string{"group": "app", "target": "app-1"}), 0.0)
}

func matches(m *dto.Metric, labels map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := labels[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(labels)
}

func TestResponseTimes(t *testing.T) {
	rt := metrics.NewResponseTimes(metrics.WithConstLabels(prometheus.Labels{"lb": "edge"}))
	for _, d := range []time.Duration{2 * time.Millisecond, 30 * time.Millisecond, 3 * time.Second} {
		rt.Observe(lb.ResponseEvent{Group: "web", Target: "a", Status: 200, HeaderTime: d})
	}
	rt.Observe(lb.ResponseEvent{Group: "web", Target: "b", Status: 503, HeaderTime: time.Millisecond})
	assert.Equal(t, 2, testutil.CollectAndCount(rt, "lbkit_target_response_seconds"))
	want := `
# HELP lbkit_target_response_seconds Time from sending an HTTP request to a target to receiving its response header, in seconds.
# TYPE lbkit_target_response_seconds histogram
lbkit_target_response_seconds_bucket{group="web",lb="edge",target="a",le="0.001"} 0
lbkit_target_response_seconds_bucket{group="web",lb="edge",target="a",le="0.0025"} 1
lbkit_target_response_seconds_bucket{group="web",lb="edge",target="a",le="0.005"} 1
lbkit_target_response_seconds_bucket{group="web",lb="edge",target="a",le="0.01"} 1
lbkit_target_response_seconds_bucket{group="web",lb="edge",target="a",le="0.025"} 1
lbkit_target_response_seconds_bucket{group="web",lb="edge",target="a",le="0.05"} 2
lbkit_target_response_seconds_bucket{group="web",lb="edge",target="a",le="0.1"} 2
lbkit_target_response_seconds_bucket{group="web",lb="edge",target="a",le="0.25"} 2
lbkit_target_response_seconds_bucket{group="web",lb="edge",target="a",le="0.5"} 2
lbkit_target_response_seconds_bucket{group="web",lb="edge",target="a",le="1"} 2
lbkit_target_response_seconds_bucket{group="web",lb="edge",target="a",le="2.5"} 2
lbkit_target_response_seconds_bucket{group="web",lb="edge",target="a",le="5"} 3
lbkit_target_response_seconds_bucket{group="web",lb="edge",target="a",le="10"} 3
lbkit_target_response_seconds_bucket{group="web",lb="edge",target="a",le="+Inf"} 3
lbkit_target_response_seconds_sum{group="web",lb="edge",target="a"} 3.032
lbkit_target_response_seconds_count{group="web",lb="edge",target="a"} 3
`
	rt.Forget("web", "b") // b left the group
	assert.Equal(t, 1, testutil.CollectAndCount(rt, "lbkit_target_response_seconds"))
	require.NoError(t, testutil.CollectAndCompare(rt, strings.NewReader(want)))
	problems, err := testutil.CollectAndLint(rt)
	require.NoError(t, err)
	assert.Empty(t, problems)
}
