// Command customproxy is a TCP load balancer built from only two lbkit
// packages, balancer and flowtable, to show that they work alone in a
// custom proxy: the balancer picks a target per connection (lock-free,
// weighted), the flow table tracks each connection with an idle timeout and
// a capacity, and its expiry callback closes idle connections.
//
//	go run ./examples/customproxy -listen 127.0.0.1:7000 -targets 127.0.0.1:7001,127.0.0.1:7002
//	go run ./examples/customproxy -demo   # runs two echo targets, sends traffic, exits
package main
