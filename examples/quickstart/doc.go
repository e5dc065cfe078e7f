// Command quickstart runs a complete lbkit load balancer on 127.0.0.1: three
// small demo targets, and in front of them an HTTP listener (round-robin,
// health checks, cookie stickiness), a TCP listener and a UDP listener. It
// sends itself some traffic and prints where it went, stops one target and
// prints the health change and what Diagnose says, then keeps serving until
// Ctrl-C so you can try it with curl and nc.
//
//	go run ./examples/quickstart
//	go run ./examples/quickstart -demo   # print the tour and exit
//
// It uses only lbkit's public API.
package main
