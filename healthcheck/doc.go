// Package healthcheck decides which targets are healthy, and says why the
// others are not.
//
// Only healthy targets get traffic, so this package decides where every
// connection goes. It holds checkers, each usable alone, and a Monitor that
// runs one against a changing set of targets. It is usable in any Go
// program: the lb package wires a Monitor's changes into a balancer; a
// sidecar can use it alone.
//
// # Checkers
//
// A Checker probes one target once: Check(ctx, target) returns nil or an
// error whose reason in words Reason returns ("connection refused",
// "timeout after 3s", "status 404, want 200", "ICMP port unreachable",
// "no ICMP echo reply in 3s", "TLS: certificate signed by unknown
// authority"). The timeout is the context's deadline; ContextWithTimeout
// makes reasons quote it exactly.
//
//   - TCP: a connection opens within the timeout.
//   - HTTP (NewHTTP): HTTP or HTTPS; method, absolute path, Host, headers,
//     expected status codes as a list and ranges (ParseStatusCodes: "200",
//     "200,202,401", "200-399"), an optional body expression, TLS settings.
//     A new connection per check unless KeepAlive is set.
//   - UDP (NewUDP): an ICMP echo to the host, then a UDP datagram to the
//     port; ICMP port unreachable means down, silence means up. Raw ICMP
//     sockets when privileged, unprivileged ping sockets otherwise.
//
// Every checker can probe a port other than the traffic port (a UDP service
// checked over TCP or HTTP, as network load balancers do). CheckerFunc
// adapts any function.
//
// # Monitor
//
// A Monitor checks each target every interval (default 5 s) with a timeout
// (3 s). A healthy target turns unhealthy after 3 consecutive failures and
// back after 3 consecutive successes (WithThresholds, or WithRetries for the
// reference's single setting); a new target is unhealthy until its first
// success, which is enough (WithInitialState). The first check of a new
// target is due at a random moment inside the first interval (or the
// shorter window of WithFirstCheckWithin), so targets added together are not
// probed together; WithJitter spreads later checks.
// A nil Checker turns health checking off: every target is healthy.
//
// One scheduler goroutine dispatches due checks from a min-heap to a
// bounded number of check goroutines (WithMaxConcurrent), so ten thousand
// targets at a one-second interval cost ten thousand checks a second and
// no sleeping goroutine per target.
//
// Passive signals complement active checks: proxies call ReportFailure and
// ReportSuccess for real connections and requests, and after 5 consecutive
// failures a target is ejected for 30 s (WithEjection), at most 50 % of the
// targets at once (WithMaxEjectedPercent), so a bad deploy cannot empty the
// group. Health and ejection are separate parts of a target's Condition;
// Condition.Serving says whether it should get traffic.
//
// Every change of a target's condition reaches the WithOnChange function
// with its reason, from one goroutine and in order. Status answers "why does
// this target get no traffic?" at any moment: state and reason, recent
// results with time, latency and reason, the counts toward the thresholds,
// the next check, the ejection and its reason. Randomness is injectable
// (WithRand); time is the time package's, so a test runs a Monitor inside
// a testing/synctest bubble to move time exactly and never sleep for real.
//
// # Example
//
//	m, err := healthcheck.New(
//		healthcheck.TCP{},
//		healthcheck.WithInterval(2*time.Second),
//		healthcheck.WithTimeout(time.Second),
//		healthcheck.WithOnChange(func(c healthcheck.Change) {
//			log.Print(c) // target "a" (10.0.0.1:80): healthy → unhealthy: connection refused
//			b.SetHealth(c.Target.ID, balancer.HealthOf(c.New.Serving())) // b: a *balancer.Balancer
//		}),
//	)
//	if err != nil { ... }
//	defer m.Close()
//	err = m.Add(healthcheck.Target{ID: "a", Addr: "10.0.0.1:80"})
//	...
//	st, _ := m.Status("a") // st.Reason: "connection refused"
package healthcheck
