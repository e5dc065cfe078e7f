package healthcheck

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Defaults, from the reference load balancers (see DESIGN.md) where they
// have one.
const (
	// DefaultInterval is the time between two checks of a target.
	DefaultInterval = 5 * time.Second
	// DefaultHealthyThreshold is the number of consecutive successes that
	// make an unhealthy target healthy again (a new target needs one).
	DefaultHealthyThreshold = 3
	// DefaultUnhealthyThreshold is the number of consecutive failures that
	// make a healthy target unhealthy.
	DefaultUnhealthyThreshold = 3
	// DefaultMaxConcurrent is the number of checks a Monitor runs at once.
	DefaultMaxConcurrent = 256
	// DefaultHistory is the number of recent results kept per target.
	DefaultHistory = 10
	// DefaultEjectionFailures is the number of consecutive failures
	// reported by ReportFailure that eject a target.
	DefaultEjectionFailures = 5
	// DefaultEjectionPeriod is how long an ejection lasts.
	DefaultEjectionPeriod = 30 * time.Second
	// DefaultMaxEjectedPercent caps the share of targets ejected at once.
	DefaultMaxEjectedPercent = 50
)

// Option configures a Monitor built by New.
type Option func(*config)

// config holds what New was given; it is fixed for the Monitor's life.
type config struct {
	interval, timeout, jitter time.Duration
	firstWithin               time.Duration // 0: the interval
	healthy, unhealthy        int
	initial                   State
	maxConcurrent             int
	history                   int
	ejectFailures             int
	ejectPeriod               time.Duration
	maxEjectedPct             int
	onChange                  func(Change)
	clock                     clock // systemClock{}; a fake in the package's tests
	rand                      func() uint64
	targets                   []Target

	// onResult, if set, is called after each check's result is recorded,
	// outside the lock, with the time the check was due. Tests and the
	// scale benchmark use it to wait for checks and measure lateness.
	onResult func(id string, due time.Time, r Result)
}

func defaultConfig() config {
	return config{
		interval:      DefaultInterval,
		timeout:       DefaultTimeout,
		healthy:       DefaultHealthyThreshold,
		unhealthy:     DefaultUnhealthyThreshold,
		initial:       Unhealthy,
		maxConcurrent: DefaultMaxConcurrent,
		history:       DefaultHistory,
		ejectFailures: DefaultEjectionFailures,
		ejectPeriod:   DefaultEjectionPeriod,
		maxEjectedPct: DefaultMaxEjectedPercent,
		clock:         systemClock{},
		rand:          rand.Uint64,
	}
}

// WithInterval sets the time between two checks of a target, measured from
// the start of the previous check, so checks keep their cadence whatever
// they take, and a check that started late does not make the next one come
// sooner. Default: DefaultInterval (5 s).
func WithInterval(d time.Duration) Option { return func(c *config) { c.interval = d } }

// WithTimeout sets the time a check may take; it must not exceed the
// interval. A check that runs out of it fails with "timeout after <d>" (or
// the checker's more specific reason). Default: DefaultTimeout (3 s).
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithThresholds sets the consecutive successes that make an unhealthy
// target healthy and the consecutive failures that make a healthy target
// unhealthy. A new target is an exception: one success makes it healthy.
// Default: DefaultHealthyThreshold and DefaultUnhealthyThreshold (3 and 3).
func WithThresholds(healthy, unhealthy int) Option {
	return func(c *config) { c.healthy, c.unhealthy = healthy, unhealthy }
}

// WithRetries sets both thresholds to n: the reference load balancers'
// single "maximum retries" setting.
func WithRetries(n int) Option { return WithThresholds(n, n) }

// WithInitialState sets the state of a newly added target before its
// first check. Unhealthy (the default) keeps traffic off a target until a
// check passes, and then one success is enough; Healthy lets traffic in at
// once, and the target then needs the unhealthy threshold of failures to go
// down.
func WithInitialState(s State) Option { return func(c *config) { c.initial = s } }

// WithJitter spreads later checks: each interval after the first is the
// interval plus a uniform random offset in [-d, +d], so targets added
// together drift apart and the checked services do not see synchronised
// probes. d must be at most half the interval. The first check of a new
// target is at a uniform random moment inside the first interval (see
// WithFirstCheckWithin). Default: 0 (no jitter after the first check).
func WithJitter(d time.Duration) Option { return func(c *config) { c.jitter = d } }

// WithFirstCheckWithin makes the first check of each target added due at
// a uniform random moment within d of its addition, instead of within the
// first interval: a new target, unhealthy until its first check passes,
// then takes traffic sooner, and a program that starts can know its
// targets' health sooner. d must be above 0 and at most the interval; the
// randomness still spreads the first checks of many targets added
// together. Default: the interval.
func WithFirstCheckWithin(d time.Duration) Option { return func(c *config) { c.firstWithin = d } }

// WithMaxConcurrent limits the number of checks running at once. When the
// limit is reached, due checks wait and start late: raise it if
// Stats().Late grows. A check lasts about a round trip (TCP, HTTP) or its
// whole timeout (UDP, when healthy), so the limit needed is about targets ×
// check duration / interval. Default: DefaultMaxConcurrent (256).
func WithMaxConcurrent(n int) Option { return func(c *config) { c.maxConcurrent = n } }

// WithHistory sets the number of recent results kept per target for
// Status. Default: DefaultHistory (10).
func WithHistory(n int) Option { return func(c *config) { c.history = n } }

// WithEjection sets passive ejection: after failures consecutive failures
// reported with ReportFailure, with no ReportSuccess in between, the target
// is ejected (receives no new traffic) for period, whatever its health. 0
// failures turns passive ejection off. Default: DefaultEjectionFailures and
// DefaultEjectionPeriod (5 failures, 30 s).
func WithEjection(failures int, period time.Duration) Option {
	return func(c *config) { c.ejectFailures, c.ejectPeriod = failures, period }
}

// WithMaxEjectedPercent caps the targets ejected at once to percent of all
// targets, rounded down, so a bad deploy that fails every request cannot
// eject the whole group (with 50 %, a group of 1 never ejects, a group of 3
// ejects at most 1). An ejection the cap refuses is counted in
// Stats().EjectionsRefused and shown in the target's Status. Default:
// DefaultMaxEjectedPercent (50).
func WithMaxEjectedPercent(percent int) Option { return func(c *config) { c.maxEjectedPct = percent } }

// WithOnChange sets the function told about every change of a target's
// health or ejection. It is called from a single goroutine owned by the
// Monitor, one change at a time, in the order the changes happened (so in
// order for each target), never with the Monitor's lock held: it may call
// the Monitor's methods, except Close. Changes queue while it runs, so it
// should return quickly. Close delivers the changes already queued before
// it returns. Default: none.
func WithOnChange(f func(Change)) Option { return func(c *config) { c.onChange = f } }

// WithRand sets the source of random numbers for the first-check offsets
// and the jitter. It is called with the Monitor's lock held, so never
// concurrently. Default: math/rand/v2.Uint64.
func WithRand(f func() uint64) Option { return func(c *config) { c.rand = f } }

// WithTargets sets the initial targets. Default: none.
func WithTargets(ts ...Target) Option {
	return func(c *config) { c.targets = append(c.targets, ts...) }
}

// validate checks the configuration, every problem at once.
func (c *config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("healthcheck: %w: "+format, append([]any{ErrInvalidOption}, args...)...))
	}
	if c.interval <= 0 {
		bad("interval %v must be above 0", c.interval)
	}
	if c.timeout <= 0 {
		bad("timeout %v must be above 0", c.timeout)
	} else if c.interval > 0 && c.timeout > c.interval {
		bad("timeout %v exceeds interval %v", c.timeout, c.interval)
	}
	if c.jitter < 0 || c.jitter > c.interval/2 {
		bad("jitter %v is outside 0..interval/2 (%v)", c.jitter, c.interval/2)
	}
	if c.firstWithin < 0 || c.firstWithin > c.interval {
		bad("first check within %v is outside 0..the interval %v", c.firstWithin, c.interval)
	}
	if c.healthy < 1 {
		bad("healthy threshold %d must be at least 1", c.healthy)
	}
	if c.unhealthy < 1 {
		bad("unhealthy threshold %d must be at least 1", c.unhealthy)
	}
	if c.initial != Healthy && c.initial != Unhealthy {
		bad("initial state %v is unknown", c.initial)
	}
	if c.maxConcurrent < 1 {
		bad("max concurrent checks %d must be at least 1", c.maxConcurrent)
	}
	if c.history < 1 {
		bad("history %d must be at least 1", c.history)
	}
	if c.ejectFailures < 0 {
		bad("ejection failures %d is negative", c.ejectFailures)
	}
	if c.ejectFailures > 0 && c.ejectPeriod <= 0 {
		bad("ejection period %v must be above 0", c.ejectPeriod)
	}
	if c.maxEjectedPct < 0 || c.maxEjectedPct > 100 {
		bad("max ejected percent %d is outside 0..100", c.maxEjectedPct)
	}
	if c.rand == nil {
		bad("rand is nil")
	}
	if err := validateTargets(c.targets); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
