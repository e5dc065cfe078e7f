// Command sticky-sessions shows session stickiness at L7 and how to test it:
// three targets that answer with different pages, a listener whose group
// sticks by a load-balancer cookie, and one whose group follows the
// application's own session cookie.
//
//	go run ./examples/guides/sticky-sessions          # the demonstration, then exit
//	go run ./examples/guides/sticky-sessions -serve   # then keep serving, for curl
//
// See docs/guides/sticky-sessions.md. It uses only lbkit's public API.
package main
