package healthcheck

import (
	"context"
	"time"
)

// DefaultTimeout is the time a check may take when neither the Monitor
// (WithTimeout) nor the caller's context sets a deadline.
const DefaultTimeout = 3 * time.Second

// Checker probes one target once. Check returns nil when the target is
// healthy, and otherwise an error whose reason in words Reason extracts
// (the checkers of this package return a *CheckError).
//
// Check must return when ctx ends: the Monitor cancels it when the target is
// removed or the Monitor closes, and its deadline is the check's timeout.
// A Monitor calls Check from many goroutines at once, for different targets;
// it never runs two checks of one target at the same time.
type Checker interface {
	Check(ctx context.Context, t Target) error
}

// CheckerFunc adapts a function to the Checker interface, for checks this
// package does not provide (a gRPC health service, a database query).
type CheckerFunc func(ctx context.Context, t Target) error

// Check calls f(ctx, t).
func (f CheckerFunc) Check(ctx context.Context, t Target) error { return f(ctx, t) }

// timeoutKey carries a check's configured timeout in its context. The
// deadline alone would do for the check itself, but the reason must say
// "timeout after 3s", not "timeout after 2.999871s": the configured figure
// people recognise.
type timeoutKey struct{}

// ContextWithTimeout returns a context for one check that ends after d,
// like context.WithTimeout, and that makes the checks of this package quote
// d exactly in their reasons ("timeout after 3s"). With a plain context,
// they quote the time left until its deadline when the check started,
// snapped to a round figure when within 1% of one. The Monitor gives every
// check such a context.
func ContextWithTimeout(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(parent, d)
	return context.WithValue(ctx, timeoutKey{}, d), cancel
}

// budget returns the context a check runs under and the time it is given:
// the Monitor's timeout when it set one, else what is left until ctx's
// deadline, else DefaultTimeout (and a context that ends then).
func budget(ctx context.Context) (context.Context, context.CancelFunc, time.Duration) {
	if d, ok := ctx.Value(timeoutKey{}).(time.Duration); ok {
		return ctx, func() {}, d
	}
	if dl, ok := ctx.Deadline(); ok {
		return ctx, func() {}, time.Until(dl)
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	return ctx, cancel, DefaultTimeout
}
