package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lbkit/lbkit/lb"
)

// Source is what a Collector reads: *lb.LoadBalancer is one.
type Source interface {
	// Stats returns a snapshot of the load balancer's counters. It is
	// called once per scrape.
	Stats() lb.Stats
}

// Option configures a Collector.
type Option func(*config)

type config struct {
	namespace string
	labels    prometheus.Labels
}

// WithNamespace sets the prefix of every metric name. Default "lbkit".
func WithNamespace(ns string) Option { return func(c *config) { c.namespace = ns } }

// WithConstLabels adds labels with fixed values to every metric, so that
// several load balancers can share one registry (e.g. {"lb": "edge"}).
// Default: none.
func WithConstLabels(l prometheus.Labels) Option { return func(c *config) { c.labels = l } }

// Collector is a prometheus.Collector of a load balancer's counters. It
// keeps no state of its own: every scrape reads Source.Stats once and
// turns the snapshot into metrics, so what Prometheus sees is exactly what
// Stats, the admin page and Diagnose report.
//
// A listener's counters restart from zero when a reload changes a setting
// its proxy fixes at start (see lb.ListenerStats); Prometheus's rate()
// reads that as a counter reset. Targets and listeners that go away take
// their series with them.
type Collector struct {
	src Source
	d   descs
}

// NewCollector returns a Collector of src's counters.
func NewCollector(src Source, opts ...Option) *Collector {
	c := config{namespace: "lbkit"}
	for _, o := range opts {
		o(&c)
	}
	return &Collector{src: src, d: newDescs(c)}
}

// Describe sends the descriptions of every metric the Collector makes.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.d.all() {
		ch <- d
	}
}

// Collect reads the source's Stats once and sends its metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	collect(c.src.Stats(), &c.d, ch)
}

// Handler returns an http.Handler that serves src's metrics, and only
// them, in the Prometheus exposition format. To add Go runtime and process
// metrics, register a Collector with a registry of your own and serve it
// with promhttp.HandlerFor.
func Handler(src Source, opts ...Option) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(src, opts...))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// codeClasses are the values of the code_class label, by index of the
// status-class arrays in lb's stats.
var codeClasses = [5]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
