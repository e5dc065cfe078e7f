package lb

import (
	"crypto/tls"
	"time"
)

// HealthCheck configures a target group's active health checks. The zero
// value checks with the defaults below; WithoutHealthCheck turns checking
// off.
type HealthCheck struct {
	// Protocol is how targets are checked: TCP (a connection opens), HTTP
	// or HTTPS (a request gets an expected status), or UDP (an ICMP echo
	// is answered, then a UDP probe of the port draws no ICMP port
	// unreachable). Default: HTTP for HTTP groups, HTTPS for HTTPS groups,
	// TCP for TCP and TLS groups, UDP for UDP groups. A UDP service is
	// often better checked over TCP or HTTP on another port: set Protocol
	// and Port.
	Protocol Protocol
	// Port is the port to check; 0 means each target's traffic port.
	Port int
	// Path is the HTTP(S) request path, absolute. Default "/".
	Path string
	// Host is the HTTP(S) Host header (and TLS server name), for targets
	// that check it. Default: the target's address.
	Host string
	// Method is the HTTP(S) method. Default "GET".
	Method string
	// Status lists the HTTP(S) status codes that count as healthy, as a
	// list and ranges: "200", "200,202,401", "200-299". Default "200".
	Status string
	// Interval is the time between checks of one target. Default 5 s.
	Interval time.Duration
	// Timeout bounds one check. Default 3 s. Must be below Interval.
	Timeout time.Duration
	// HealthyThreshold is the consecutive successes that make an unhealthy
	// target healthy; UnhealthyThreshold the consecutive failures that
	// make a healthy target unhealthy. Default 3 each. A newly added target
	// is healthy after its first success.
	HealthyThreshold, UnhealthyThreshold int
	// TLS configures HTTPS checks (CA pool, server name,
	// InsecureSkipVerify as an explicit choice). Default: the system's CA
	// pool.
	TLS *tls.Config
}

// Hooks are functions the load balancer calls on events, for users who
// export their own metrics or alerts. A nil field means none. They are
// called from the load balancer's goroutines, never with a lock held, and
// must not block.
type Hooks struct {
	// HealthChange is called when a target's health or ejection changes,
	// with the reason in words.
	HealthChange func(HealthEvent)
	// FlowRejected is called for every client connection, datagram or
	// HTTP client refused before it reached a target: access control, a
	// full flow table, a source over its flow limit, no healthy target, a
	// bad PROXY header. Under a flood it is called for every one.
	FlowRejected func(FlowRejectedEvent)
	// Response is called for every response a target sends an HTTP or
	// HTTPS listener, for response-time histograms. It is called on the
	// request's goroutine, once per request and per retry, and must be
	// quick: it is on the data path.
	Response func(ResponseEvent)
}

// ResponseEvent is one response from a target to an HTTP or HTTPS
// listener. It is passed by value and holds no pointer but its strings, so
// a hook that only counts allocates nothing.
type ResponseEvent struct {
	// Group and Target name the target that answered.
	Group, Target string
	// Status is the target's status code.
	Status int
	// HeaderTime is the time from sending the request to receiving the
	// response header (the access log's upstream_header_time).
	HeaderTime time.Duration
}

// HealthEvent is a target's change of health or ejection.
type HealthEvent struct {
	// Group and Target name the target.
	Group, Target string
	// Healthy and Ejected are the target's state after the change; Serving
	// says whether it now receives new traffic.
	Healthy, Ejected, Serving bool
	// Reason says why, in words ("connection refused", "status 503, want
	// 200", "3 consecutive successful checks", "ejected: 5 consecutive
	// failures, last: connection reset").
	Reason string
	// Time is when it happened.
	Time time.Time
}
