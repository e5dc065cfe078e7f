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
