package healthcheck

import (
	"fmt"
	"time"
)

// Result is the outcome of one check.
type Result struct {
	// Time is when the check started.
	Time time.Time `json:"time,omitzero"`
	// Latency is how long the check took.
	Latency time.Duration `json:"latency_ns"`
	// OK reports whether the check passed.
	OK bool `json:"ok"`
	// Reason says why it failed, in words ("" when it passed).
	Reason string `json:"reason"`
}

// Change reports that a target's condition changed: its health from active
// checks, its ejection from passive signals, or both.
type Change struct {
	// Target is the target that changed.
	Target Target
	// Time is when the change happened, on the Monitor's clock.
	Time time.Time
	// Old and New are the condition before and after. New.Serving() says
	// whether the target should now receive new traffic.
	Old, New Condition
	// Reason says why, in words: the failing check's reason ("connection
	// refused", "status 503, want 200"), "first successful check", "3
	// consecutive successful checks", "ejected: 5 consecutive failures,
	// last: connection reset", "ejection ended after 30s".
	Reason string
}

// The reasons of changes the Monitor makes itself (the others are the
// checks' reasons). Doc comments quote them; TestQuotedReasons keeps the
// quotes true.
const reasonFirstSuccess = "first successful check"

func reasonSuccesses(n int) string { return fmt.Sprintf("%d consecutive successful checks", n) }

func reasonFailures(n int, last string) string {
	return fmt.Sprintf("%d consecutive failures, last: %s", n, last)
}

func reasonEjected(why string) string { return "ejected: " + why }

func reasonEjectionEnded(period time.Duration) string {
	return "ejection ended after " + formatDuration(period)
}

// String returns a line for a log, e.g. `target "a" (10.0.0.1:80):
// healthy → unhealthy: connection refused`.
func (c Change) String() string {
	return fmt.Sprintf("target %q (%s): %v → %v: %s", c.Target.ID, c.Target.Addr, c.Old, c.New, c.Reason)
}

// Status is everything the Monitor knows about one target, for answering
// "why does this target get no traffic?".
type Status struct {
	// Target is the target.
	Target Target `json:"target"`
	// Condition is the target's health and ejection; Serving() says whether
	// it should receive new traffic.
	Condition
	// Reason says why the target is in its health state: the latest
	// failure's reason while unhealthy, what made it healthy while healthy,
	// "not checked yet" before the first check, "health checking off" when
	// the Monitor has no checker.
	Reason string `json:"reason"`
	// Since is when the health state last changed (or the target was
	// added).
	Since time.Time `json:"since,omitzero"`
	// Successes and Failures count the consecutive check results toward
	// the thresholds; one of them is always 0.
	Successes int `json:"successes"`
	Failures  int `json:"failures"`
	// Checking reports that a check is running now, or is due and waiting
	// for a free slot (see WithMaxConcurrent).
	Checking bool `json:"checking"`
	// NextCheck is when the next check is due; zero while one is running
	// or when the Monitor has no checker.
	NextCheck time.Time `json:"next_check,omitzero"`
	// Results holds the most recent check results, oldest first (see
	// WithHistory).
	Results []Result `json:"results"`

	// PassiveFailures counts the consecutive failures reported with
	// ReportFailure toward ejection.
	PassiveFailures int `json:"passive_failures"`
	// EjectedUntil is when the current ejection ends; zero when not
	// ejected.
	EjectedUntil time.Time `json:"ejected_until,omitzero"`
	// EjectionReason says why the target is ejected ("5 consecutive
	// failures, last: connection reset"), or why it is not although it
	// reached the threshold ("not ejected: 2 of 4 targets already ejected,
	// cap 50%"); empty otherwise.
	EjectionReason string `json:"ejection_reason"`
}

// Stats is a cheap snapshot of a Monitor's counts and counters.
type Stats struct {
	// Targets is the number of targets.
	Targets int `json:"targets"`
	// Healthy and Unhealthy count targets by health state.
	Healthy   int `json:"healthy"`
	Unhealthy int `json:"unhealthy"`
	// Ejected counts targets ejected by passive signals now.
	Ejected int `json:"ejected"`
	// Serving counts targets that should receive new traffic: healthy and
	// not ejected.
	Serving int `json:"serving"`
	// InFlight is the number of checks running now.
	InFlight int `json:"in_flight"`
	// Checks and Failures count the checks completed and, of them, those
	// that failed, since the Monitor was made.
	Checks   uint64 `json:"checks"`
	Failures uint64 `json:"failures"`
	// Late counts checks that started more than a tenth of the interval
	// after they were due: the concurrency limit or the machine cannot
	// keep up (see WithMaxConcurrent).
	Late uint64 `json:"late"`
	// Ejections counts ejections; EjectionsRefused counts those the cap of
	// WithMaxEjectedPercent prevented.
	Ejections        uint64 `json:"ejections"`
	EjectionsRefused uint64 `json:"ejections_refused"`
}
