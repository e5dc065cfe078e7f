// Command epollexp is a measurement, not a proxy: the least work an
// HTTP/1.1 keep-alive proxy written in Go does per request when it
// bypasses the Go runtime's netpoller and goroutines as nginx does — one
// event loop per GOMAXPROCS on its own epoll instance and SO_REUSEPORT
// listener, non-blocking read and write system calls, no goroutine switch
// per request. It handles what examples/bench/http/run.sh sends (GET
// requests without a body, answered with a Content-Length body that fits
// in one 4 KiB buffer) and closes the connection on anything else: no
// timeouts, no pipelining, no health, no retries.
//
// run.sh puts it beside lbkit's engine and nginx to say how much of the
// engine's gap to nginx is the goroutine-per-connection model itself
// (docs/benchmarks.md, "proxy: HTTP (L7)"). Linux only.
//
//	go run ./examples/bench/http/epollexp -listen 127.0.0.1:18087 -target 127.0.0.1:18080
package main
