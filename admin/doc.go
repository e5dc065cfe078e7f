// Package admin is the admin endpoint of a load balancer: an http.Handler
// that shows what the load balancer is doing and lets an operator reload
// it.
//
//	GET  /           a status page for people: listeners, target groups and
//	                 every target with its weight, health and the reason in
//	                 words ("connection refused"), whether it serves, drains
//	                 or is ejected, its connections and requests
//	GET  /stats      lb.Stats, JSON
//	GET  /diagnose   lb.Diagnosis, JSON; ?client=IP&port=N asks for one
//	                 client's point of view; ?format=text in words
//	GET  /health     every target's health and its reason, JSON
//	POST /reload     calls the program's reload function: 200, or 422 with
//	                 every problem of the refused configuration
//	GET  /metrics    whatever handler the program mounts (metrics.Handler)
//
// The page puts trouble first: a summary at the top says whether anything
// is wrong (red: a listener not serving, a group with no target serving, a
// full flow table; amber: a group with failing targets that still serves,
// or targets deliberately drained or at weight 0), with a line per
// listener in trouble and per group ("Group app: 2 of 3 targets serving,
// 1 failing"), then the groups in trouble before the others, and each
// target's row coloured (red for a failure, amber for a drain). It is
// plain HTML from html/template, with no script; it reloads itself every 5
// seconds (?refresh=N changes that, 0 turns it off) and links to /metrics
// when it is mounted.
//
// It protects itself: requests naming a host other than localhost, an IP
// address or one given with WithHosts are refused (DNS rebinding), and
// requests that change something are refused when a browser says they
// come from another site, and need the token given with WithToken (or,
// without one, must arrive on a loopback address).
//
// The package does not import Prometheus's client: a program that wants
// /metrics passes metrics.Handler(l) with WithMetrics.
//
// # Example
//
//	h := admin.New(l,
//		admin.WithReload(reload),               // func(context.Context) error
//		admin.WithMetrics(metrics.Handler(l)),
//	)
//	go http.Serve(adminListener, h) // on 127.0.0.1: it can reload
package admin
