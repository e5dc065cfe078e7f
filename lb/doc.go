// Package lb assembles lbkit's packages into a load balancer: listeners
// that accept clients and forward them to target groups, configured with
// functional options, changed live while traffic flows, and explained by
// Stats and Diagnose.
//
// # The model
//
//	LoadBalancer ── listener (TCP | UDP | TLS | HTTP | HTTPS, address, access control,
//	                 timeouts, certificates, rules)
//	                   └── forwards to ──> target group (protocol, algorithm, stickiness,
//	                                        health check, deregistration delay, discovery)
//	                                          └── target (address, weight 0..100)
//
// A listener accepts a client; its rules (L7) or its default action pick a
// target group; the group's balancer picks a healthy target of weight above
// 0 (or the session's sticky target); the proxy forwards. Front-end and
// back-end protocols pair as the reference load balancers allow: TCP→TCP,
// UDP→UDP, TLS→TCP or TLS, HTTP→HTTP, HTTPS→HTTP or HTTPS.
//
// # Zero configuration beyond a listener and a target
//
//	l, err := lb.New(
//		lb.WithListener("web", lb.HTTP, "127.0.0.1:8080", lb.WithForwardTo("app")),
//		lb.WithTargetGroup("app", lb.HTTP, lb.WithTarget("127.0.0.1:9001"), lb.WithTarget("127.0.0.1:9002")),
//	)
//	if err != nil { ... } // every problem of the configuration, each a *FieldError
//	if err := l.Start(); err != nil { ... }
//	defer l.Shutdown(ctx)
//
// Everything else has the reference load balancers' defaults: smooth
// weighted round-robin, health checks every 5 s (timeout 3 s, 3 successes
// to turn healthy, 3 failures to turn unhealthy; a new target is healthy
// after its first success), TCP flows idle out after 350 s with a reset both
// ways, UDP flows after 120 s, HTTP keep-alive after 60 s, a 5 s connect
// timeout, a 300 s deregistration delay, 20-minute sticky sessions when
// stickiness is on.
//
// # Errors
//
// A configuration is checked whole before anything starts or changes, and
// every problem comes back at once, joined with errors.Join. Each is a
// *FieldError that names the object (Kind, Name, Index, and the Parent
// that holds a target or rule), the setting (Field, by its option's name
// without "With") and the cause, and wraps ErrInvalid; a call that names
// a listener, group or target that does not exist returns one wrapping
// ErrNotFound. Programs test them with errors.Is and errors.As, never by
// their text (package config maps them to the paths of its file).
//
// # Limits
//
// The process's file descriptors are a budget (WithDescriptorBudget): its
// limit minus a reserve for listeners, health checks and the rest
// (DescriptorReserve); a TCP connection costs 2, a UDP flow 1, an HTTP
// connection 1, and beyond the budget new clients are refused, counted and
// reported with reason "descriptors". The flow table holds as many flows as
// the budget, one client address at most a sixteenth of them
// (DefaultMaxFlowsPerSource), and UDP flows whose target has not answered
// idle out after 30 s and are evicted first (WithUnrepliedTimeout), as
// conntrack does. Accept loops never end on an error: they back off, say so
// in Stats, Diagnose and the log, and resume by themselves.
//
// # Live changes
//
// Reconfigure replaces the whole configuration (a configuration file
// reload); AddTarget, RemoveTarget, SetWeight, SetAlgorithm, SetStickiness,
// AddListener, RemoveListener, SetCertificates, SetIdleTimeout and SetACL
// change one thing. Each validates the result first and applies to the next
// new connection (L4) or request (L7); none breaks an established
// connection: a removed target drains for its delay, a removed L4 listener
// stops at once, a removed L7 listener lets its keep-alive connections
// finish, replaced certificates serve new handshakes only, and a changed
// idle timeout applies to new flows.
//
// # Observing
//
// Stats returns every counter at once: flows new/active/rejected per
// protocol, bytes, requests and status classes, targets healthy and not,
// per-target connections and response time. Diagnose answers "why does this
// target get no traffic?" and "why is my connection refused?" in words and
// as data: no listener on that port, client denied by access control, group
// not attached, target unhealthy (with its last checks and their reasons),
// weight 0, draining until when, ejected by passive checks, flow table full,
// descriptor budget spent and which limit refused clients, a listener that
// cannot accept (and since when).
// Hooks report health changes and refused flows as they happen.
package lb
