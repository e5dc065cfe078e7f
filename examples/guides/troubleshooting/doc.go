// Command troubleshooting walks through the questions behind "connection
// timed out" and "target unhealthy", one broken setup at a time, and prints
// what a client sees and what lbkit says about it: Diagnose, the
// FlowRejected hook and the counters in Stats.
//
//	go run ./examples/guides/troubleshooting          # the walk-through, then exit
//	go run ./examples/guides/troubleshooting -serve   # then keep serving, for curl and nc
//
// See docs/guides/troubleshooting.md. It uses only lbkit's public API.
package main
