// Package benchcpu reports a benchmark's CPU time per operation
// (cpu-ns/op) beside its wall time (ns/op).
//
// On a shared machine wall time also counts the time other programs held
// the cores; the process's own CPU time (user + system, all threads, the
// garbage collector included) does not, so it varies far less between runs.
// Benchmarks in lbkit quote ratios against a baseline measured in the same
// run, and report this metric so that those ratios can be read in CPU time
// too.
package benchcpu

import "testing"

// Measure starts measuring the process's CPU time and returns a function
// that reports it per operation as cpu-ns/op. Call it after setup, and call
// the function it returns (typically deferred) when the loop ends:
//
//	defer benchcpu.Measure(b)()
//	for b.Loop() { ... }
//
// Where the platform cannot measure CPU time, nothing is reported.
func Measure(b *testing.B) func() {
	start, ok := cpuTime()
	return func() {
		end, ok2 := cpuTime()
		if ok && ok2 && b.N > 0 {
			b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
		}
	}
}
