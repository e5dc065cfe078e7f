// Command lbd is a load-balancer daemon configured by a YAML file, built
// only from lbkit's public API: config reads the file, lb runs it, admin
// serves the status page, JSON and reloads, metrics serves Prometheus.
//
//	lbd -config lbd.yaml [-admin 127.0.0.1:9900] [-log-format text|json] [-log-level info]
//
// Try it with the sample configuration and its demo targets:
//
//	go run ./examples/lbd -config examples/lbd/lbd.yaml -demo-targets
//	curl http://127.0.0.1:8080/              # round-robin over web-1..3
//	echo hello | nc -q1 127.0.0.1 9090       # TCP echo
//	echo hello | nc -u -w1 127.0.0.1 9053    # UDP echo
//	open http://127.0.0.1:9900/              # the status page
//
// Signals: SIGHUP reloads the file (so does POST /reload on the admin
// address): the new file is read and checked first, and a bad one changes
// nothing and is logged (the POST's answer lists every problem); a good one
// is applied live with lb.Reconfigure, breaking no established connection.
// SIGTERM and SIGINT stop gracefully: listeners stop accepting, what is in
// flight finishes within -shutdown-timeout, then the rest is closed.
package main
