package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lbkit/lbkit/lb"
)

// DefaultResponseBuckets are the upper bounds, in seconds, of the response
// time histogram's buckets: from 1 ms to 10 s.
var DefaultResponseBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// ResponseTimes is a histogram of targets' HTTP response times (from
// sending a request to receiving the response header), by group and target:
//
//	lbkit_target_response_seconds{group,target}
//
// Unlike Collector it keeps state: histograms cannot be read off a Stats
// snapshot, so it observes every response through the load balancer's
// Response hook. Make it before the load balancer and pass Observe in its
// hooks:
//
//	rt := metrics.NewResponseTimes()
//	l, _ := lb.New(lb.WithHooks(lb.Hooks{Response: rt.Observe}), ...)
//	reg.MustRegister(metrics.NewCollector(l), rt)
//
// A target's series stay after it leaves the group; Forget removes them.
type ResponseTimes struct {
	h *prometheus.HistogramVec
}

// NewResponseTimes returns a response-time histogram. The options are the
// Collector's (namespace, constant labels); buckets are
// DefaultResponseBuckets.
func NewResponseTimes(opts ...Option) *ResponseTimes {
	c := config{namespace: "lbkit"}
	for _, o := range opts {
		o(&c)
	}
	return &ResponseTimes{h: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace:   c.namespace,
		Subsystem:   "target",
		Name:        "response_seconds",
		Help:        "Time from sending an HTTP request to a target to receiving its response header, in seconds.",
		Buckets:     DefaultResponseBuckets,
		ConstLabels: c.labels,
	}, []string{"group", "target"})}
}

// Observe records one response. It is lb.Hooks.Response's shape.
func (r *ResponseTimes) Observe(e lb.ResponseEvent) {
	r.h.WithLabelValues(e.Group, e.Target).Observe(e.HeaderTime.Seconds())
}

// Forget removes a target's series.
func (r *ResponseTimes) Forget(group, target string) {
	r.h.DeleteLabelValues(group, target)
}

// Describe implements prometheus.Collector.
func (r *ResponseTimes) Describe(ch chan<- *prometheus.Desc) { r.h.Describe(ch) }

// Collect implements prometheus.Collector.
func (r *ResponseTimes) Collect(ch chan<- prometheus.Metric) { r.h.Collect(ch) }
