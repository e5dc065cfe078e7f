// Command udp-failover balances a UDP service over two targets whose health
// is checked over TCP, and shows the failover when one target's health
// endpoint stops: its clients' next datagrams go to the other target.
//
// The two targets are two hosts, 127.0.0.1 and ::1, each with a UDP echo
// service and a TCP health endpoint on the same port number, as a target
// group's health check expects (one health port for every target).
//
//	go run ./examples/guides/udp-failover          # the demonstration, then exit
//	go run ./examples/guides/udp-failover -serve   # then keep serving for nc
//
// See docs/guides/udp-failover.md. It uses only lbkit's public API.
package main
