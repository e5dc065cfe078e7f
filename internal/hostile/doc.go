// Package hostile is lbkit's hostile-input suite: tests that attack a load
// balancer the way an outside tester would, over real loopback sockets, and
// check that it stays safe. The package holds no code of its own; its tests
// run with every other package's (`go test ./...`, and so `.ci/run`).
//
// Every case states the safe behaviour it checks in its comment and fails
// when it is not met. Cases are bounded in count and time and stop by
// themselves; none asserts on absolute speed.
//
// # The child load balancer
//
// Cases that starve the process (file descriptors) cannot lower the limits
// of the test binary itself, which runs every other test. They run the load
// balancer in a child process instead: the test binary re-executed with
// LBKIT_HOSTILE_CHILD set to the child's spec (JSON: its RLIMIT_NOFILE, the
// descriptor budget, timeouts, the targets' addresses, a certificate). The
// child lowers its own limit with setrlimit before it starts the load
// balancer, prints its listeners' addresses, and answers "report" on its
// standard input with its Stats and Diagnose, in JSON, on its standard
// output, which was open before any starvation. Targets and clients live in
// the parent. See child_test.go.
//
// The child has one listener of each kind, named by it: tcp, tls, http,
// https and udp, all on 127.0.0.1 port 0, forwarding to an echo (TCP and
// TLS), an HTTP target, and a UDP echo.
//
// # Cases
//
//   - exhaustion_test.go: descriptors exhausted through each listener kind
//     and released; every listener accepts again within a bounded time, and
//     the episode is counted and shown by Diagnose. With the default budget
//     the descriptors are never exhausted at all.
//
//   - flood_test.go: UDP floods (one source address on many ports; many
//     source addresses) and held TCP connections from one address, against
//     the defaults: normal clients from another address keep at least 99 %
//     success, two-way UDP flows are never evicted, and every listener serves
//     afterwards.
//
//   - http_test.go: the HTTP/1.1 request-smuggling corpus (CL.TE, TE.CL,
//     TE obfuscations, conflicting lengths, field and chunk syntax) through
//     an HTTP listener, each answered with its status and the connection
//     closed, what the target receives checked byte for byte (nothing, for a
//     refused message); HTTPS refusals.
//
//   - http2_test.go: HTTP/2 requests that would become something else once
//     downgraded (DATA not matching Content-Length, Transfer-Encoding,
//     connection-specific fields, CR LF in names, values, the path or the
//     method), refused with the target receiving nothing; HTTP/2 rapid
//     reset through a load balancer, with a normal client keeping every
//     answer and the target's connections within the circuit breaker;
//     h2spec's conformance cases, failing none but Go's known three.
//
//   - proxyproto_test.go: PROXY headers split, truncated, malformed, late,
//     and from untrusted sources, the target seeing no connection for a
//     refused one.
//
//   - admin_test.go: cross-site and DNS-rebinding requests to the admin
//     endpoint, and its bearer token.
//
// Malformed request bodies (a bad chunk, a truncated body) are covered by
// the proxy package's engine tests and http_test.go's chunk cases.
package hostile
