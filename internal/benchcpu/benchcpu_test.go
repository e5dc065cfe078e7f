package benchcpu

import (
	"testing"
	"time"
)

func TestCPUTimeAdvancesWithWork(t *testing.T) {
	start, ok := cpuTime()
	if !ok {
		t.Skip("CPU time is not measured on this platform")
	}
	x := 0
	for end := time.Now().Add(20 * time.Millisecond); time.Now().Before(end); {
		x++ // busy: the process must use CPU time
	}
	end, _ := cpuTime()
	if end <= start {
		t.Fatalf("CPU time did not advance over 20ms of work (%v → %v, %d loops)", start, end, x)
	}
}

func BenchmarkMeasure(b *testing.B) {
	defer Measure(b)()
	s := 0
	for i := range b.N {
		s += i
	}
	_ = s
}
