//go:build unix

package flowtable

import "syscall"

// cpuTime returns the CPU time the process has used, user and system, in
// nanoseconds; the benchmarks report it per operation beside wall time,
// because on a shared machine wall time also counts the time other
// processes ran.
func cpuTime() int64 {
	var r syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &r); err != nil {
		return 0
	}
	return r.Utime.Nano() + r.Stime.Nano()
}
