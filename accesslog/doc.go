// Package accesslog writes the load balancer's access and flow logs where
// operators' tools read them: to a file of its own that logrotate can
// rotate (File, reopened on a signal), in the combined log format that
// goaccess, GoAccess-like dashboards and awstats read (NewCombinedHandler),
// or as JSON with slog's own handler; and sampled, when a busy listener's
// every request is too much (Sample).
//
// The records come from lb.WithAccessLog (HTTP and HTTPS listeners: message
// "http") and lb.WithFlowLog (TCP, TLS and UDP listeners: message "flow"),
// which take any *slog.Logger:
//
//	f, err := accesslog.Open("/var/log/lbd/access.log")
//	...
//	logger := slog.New(accesslog.NewCombinedHandler(f))
//	l, err := lb.New(lb.WithListener("web", lb.HTTP, ":80", lb.WithForwardTo("app"), lb.WithAccessLog(logger)), ...)
//	...
//	// on SIGUSR1, after logrotate moved the file:
//	f.Reopen()
package accesslog
