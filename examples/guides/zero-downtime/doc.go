// Command zero-downtime replaces version 1 of a TCP service by version 2
// behind a running lbkit listener without breaking a connection: the new
// target is added and gets traffic once its health check passes, the old
// ones are drained by weight and deregistered with a delay during which
// their established connections continue.
//
//	go run ./examples/guides/zero-downtime          # the demonstration, then exit
//	go run ./examples/guides/zero-downtime -serve   # then keep serving, for nc
//
// See docs/guides/zero-downtime.md. It uses only lbkit's public API.
package main
