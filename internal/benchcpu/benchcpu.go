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
