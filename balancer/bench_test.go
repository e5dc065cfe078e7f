package balancer

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/lbkit/lbkit/internal/benchcpu"
)

// BenchmarkPick measures one pick and its Done for every algorithm at 3 to
// 10 000 targets, serially and in parallel, beside the baseline: nginx's
// smooth weighted round-robin under a mutex (impl=nginx-mutex).
func BenchmarkPick(b *testing.B) {
	sizes := []int{3, 100, 1000, 10000}
	impls := []struct {
		name string
		algo Algorithm
	}{
		{"round_robin", RoundRobin},
		{"least_connections", LeastConnections},
		{"source_ip_hash", SourceIPHash},
		{"key_hash", KeyHash},
		{"random", Random},
	}
	for _, n := range sizes {
		ts := targets(n, 1, 2, 3, 5, 8)
		for _, mode := range []string{"serial", "parallel"} {
			for _, im := range impls {
				b.Run(fmt.Sprintf("impl=%s/n=%d/mode=%s", im.name, n, mode), func(b *testing.B) {
					bal := mustNew(b, WithAlgorithm(im.algo), WithTargets(ts...))
					info := PickInfo{Source: netip.MustParseAddr("198.51.100.7"), Hash: 0xfeedface}
					pick := func() {
						p, err := bal.Pick(info)
						if err != nil {
							b.Fatal(err)
						}
						p.Done()
					}
					run(b, mode, pick)
				})
			}
			b.Run(fmt.Sprintf("impl=nginx-mutex/n=%d/mode=%s", n, mode), func(b *testing.B) {
				ref := newNginxWRR(ts)
				run(b, mode, func() { _ = ref.pick() })
			})
		}
	}
}

func run(b *testing.B, mode string, f func()) {
	b.ReportAllocs()
	b.ResetTimer() // the setup (building tables) is not the pick
	defer benchcpu.Measure(b)()
	if mode == "serial" {
		for b.Loop() {
			f()
		}
		return
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			f()
		}
	})
}

// BenchmarkMaglevBuild measures building the lookup table from scratch.
func BenchmarkMaglevBuild(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		ts := targets(n, 1, 2, 3)
		ids, ws := make([]string, n), make([]int, n)
		for i, x := range ts {
			ids[i], ws[i] = x.ID, x.Weight
		}
		m := maglevSizeFor(n)
		b.Run(fmt.Sprintf("n=%d/m=%d", n, m), func(b *testing.B) {
			b.ReportAllocs()
			defer benchcpu.Measure(b)()
			for b.Loop() {
				_ = buildMaglev(ids, ws, m)
			}
		})
	}
}

// BenchmarkUpdate measures a control-plane change (a health flip, which
// rebuilds the snapshot) at several sizes, for the record: changes are not a
// hot path, but they must stay cheap enough for frequent health churn.
func BenchmarkUpdate(b *testing.B) {
	for _, n := range []int{100, 10000} {
		for _, algo := range []Algorithm{RoundRobin, LeastConnections, SourceIPHash} {
			b.Run(fmt.Sprintf("algo=%s/n=%d", algo, n), func(b *testing.B) {
				bal := mustNew(b, WithAlgorithm(algo), WithTargets(targets(n, 1, 2, 3, 5, 8)...))
				h := Healthy
				for b.Loop() {
					h ^= 1
					if err := bal.SetHealth("t001", h); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
