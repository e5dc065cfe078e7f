// Command lbd is a load balancer configured by a YAML file, built only from
// lbkit's public API: config reads the file, lb runs it, admin serves the
// status page, the JSON endpoints and the runtime API, metrics serves
// Prometheus, accesslog writes the access and flow logs. It includes the
// integrations, each a module of its own: target groups follow a
// Kubernetes Service (discovery: {kubernetes: ...}) or an xDS control
// plane's cluster (discovery: {xds: ...}), and sticky sessions are shared
// across nodes through Redis (stickiness: {store: {redis: ...}}); see
// docs/configuration.md.
//
// Install it with
//
//	go install github.com/lbkit/lbkit/cmd/lbd@latest
//
// and run it:
//
//	lbd run -config FILE [-admin 127.0.0.1:9900] [-pid-file FILE] [-state-file FILE] ...
//	lbd validate -config FILE     every problem of a file, exit status 1 if any; nothing started
//	lbd upgrade [-admin ADDR]     replace the running lbd by the binary now installed
//	lbd version                   module version, commit, Go release
//
// Try it from a checkout with the sample configuration and its demo
// targets:
//
//	go run ./cmd/lbd run -config cmd/lbd/lbd.yaml -demo-targets
//	curl http://127.0.0.1:8080/              # round-robin over web-1..3
//	echo hello | nc -q1 127.0.0.1 9090       # TCP echo
//	echo hello | nc -u -w1 127.0.0.1 9053    # UDP echo
//	open http://127.0.0.1:9900/              # the status page
//
// Signals (send them to lbd's own process: `go run` is another one):
//
//   - SIGHUP reloads the file (so does POST /reload on the admin address):
//     the new file is read and checked first, and a bad one changes nothing
//     and is logged (the POST's answer lists every problem); a good one is
//     applied live, breaking no established connection, and the runtime
//     API's changes are made again on top of it.
//   - SIGUSR2 upgrades the binary (so do POST /upgrade and `lbd upgrade`):
//     lbd starts the executable now at its path with the same arguments,
//     hands it every listening socket, and once the new process has checked
//     its targets and serves, the old one stops accepting, finishes what is
//     in flight within -shutdown-timeout and exits. No client is refused.
//   - SIGUSR1 reopens the -access-log file (after logrotate moved it).
//   - SIGTERM and SIGINT stop gracefully: listeners stop accepting, what is
//     in flight finishes within -shutdown-timeout, then the rest is closed.
//
// Under systemd (deploy/lbd.service), lbd is a Type=notify service: it says
// READY=1 once it serves, RELOADING=1 and READY=1 around a reload,
// STOPPING=1 when it stops, and after an upgrade the new process says
// MAINPID= so that systemd follows it.
//
// The runtime API's changes (weights, drains, health checks, targets added
// or removed) are kept across reloads; with -state-file also across
// restarts and upgrades. GET /runtime lists them and the status page shows
// them; DELETE /runtime goes back to the file.
package main
