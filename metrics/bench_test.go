package metrics_test

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/metrics"
)

// BenchmarkScrape measures one scrape of a load balancer with a listener
// and a group of 100 targets: impl=collector gathers every metric through
// a registry; impl=stats only takes the Stats snapshot the collector
// reads, the floor of any exporter of it; impl=vecs gathers the same
// series from client_golang's vectors, the cost of exposition alone.
func BenchmarkScrape(b *testing.B) {
	opts := []lb.GroupOption{lb.WithoutHealthCheck()}
	for i := range 100 {
		opts = append(opts, lb.WithTarget(fmt.Sprintf("127.0.0.1:%d", 10000+i)))
	}
	l, err := lb.New(lb.WithLogger(slog.New(slog.DiscardHandler)),
		lb.WithListener("web", lb.HTTP, "127.0.0.1:0", lb.WithForwardTo("app")),
		lb.WithTargetGroup("app", lb.HTTP, opts...))
	if err != nil {
		b.Fatal(err)
	}
	if err := l.Start(); err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.Run("impl=collector", func(b *testing.B) {
		reg := prometheus.NewRegistry()
		reg.MustRegister(metrics.NewCollector(l))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := reg.Gather(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=vecs", func(b *testing.B) {
		// The same number of series kept in client_golang's own vectors,
		// as an exporter that counts twice would: Gather's own cost.
		reg := prometheus.NewRegistry()
		if err := reg.Register(metrics.NewCollector(l)); err != nil {
			b.Fatal(err)
		}
		fams, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		vecs := prometheus.NewRegistry()
		for _, mf := range fams {
			var names []string
			for _, lp := range mf.GetMetric()[0].GetLabel() {
				names = append(names, lp.GetName())
			}
			v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: mf.GetName(), Help: mf.GetHelp()}, names)
			vecs.MustRegister(v)
			for _, m := range mf.GetMetric() {
				var vals []string
				for _, lp := range m.GetLabel() {
					vals = append(vals, lp.GetValue())
				}
				v.WithLabelValues(vals...).Set(1)
			}
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := vecs.Gather(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=stats", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = l.Stats()
		}
	})
}
