// Command idle-timeouts shows what lbkit does with idle connections: a TCP
// connection idle past its listener's idle timeout is reset (RST) on both
// sides; one whose client sends TCP keepalive probes stays open; an HTTP
// keep-alive connection idle past its timeout is closed cleanly.
//
//	go run ./examples/guides/idle-timeouts          # the demonstration, then exit
//	go run ./examples/guides/idle-timeouts -serve   # then keep serving for nc and curl
//
// See docs/guides/idle-timeouts.md. It uses only lbkit's public API.
package main
