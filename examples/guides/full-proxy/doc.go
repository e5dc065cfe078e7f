// Command full-proxy shows why lbkit has no asymmetric-routing problem: it is
// a full proxy, so a client's connection ends at lbkit and lbkit opens its
// own connection to the target. The target sees lbkit's address as its peer
// and answers lbkit, whatever the routes between the client and the target
// are; it learns the client's address from a PROXY protocol header (TCP) or
// X-Forwarded-For (HTTP).
//
// To make the two connections visible, clients reach lbkit over IPv6 (::1)
// and lbkit reaches the targets over IPv4 (127.0.0.1): a packet-rewriting
// balancer could not even change the address family.
//
//	go run ./examples/guides/full-proxy          # the demonstration, then exit
//	go run ./examples/guides/full-proxy -serve   # then keep serving
//
// See docs/guides/full-proxy.md. It uses only lbkit's public API.
package main
