// Command client-ip shows how targets behind lbkit learn the client's real
// IP address: X-Forwarded-For at L7, with and without trusted proxies in
// front; the PROXY protocol (v1 and v2) from lbkit to TCP targets; and the
// PROXY protocol from another balancer in front of lbkit, trusted or not.
//
//	go run ./examples/guides/client-ip          # the demonstration, then exit
//	go run ./examples/guides/client-ip -serve   # then keep serving, for curl
//
// See docs/guides/client-ip.md. It uses only lbkit's public API.
package main
