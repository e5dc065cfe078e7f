// Command maglev-nodes runs two lbkit load balancers in one process, as two
// nodes behind one name, with the same targets and source-IP hashing
// (Maglev). Without talking to each other they send every client to the
// same target; when a target goes down, only its clients move, to the same
// new target on both nodes, and they come back when it recovers.
//
// The nodes sit behind a stand-in for an L4 balancer that passes each
// client's address in a PROXY protocol header, so a few loopback connections
// can play clients from many addresses (192.0.2.0/24, a documentation
// range: the addresses only travel inside the headers).
//
//	go run ./examples/guides/maglev-nodes          # the demonstration, then exit
//	go run ./examples/guides/maglev-nodes -serve   # then keep serving
//
// See docs/guides/maglev-nodes.md. It uses only lbkit's public API.
package main
