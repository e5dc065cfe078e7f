package healthcheck

import "time"

// clock is the Monitor's source of time: when checks are due, when
// ejections end, and the times in statuses and changes. It is not part of
// the API: the Monitor needs timers as well as the time, so it cannot take
// the func() time.Time that flowtable and sticky take (WithClock), and a
// program that wants to test it in virtual time runs it inside a
// testing/synctest bubble instead (see TestMonitorInSynctestBubble). The
// package's own tests inject a fake clock that they advance explicitly.
// Network timeouts inside a check are real time whatever the clock.
type clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a stopped timer. The Monitor arms it with Reset.
	NewTimer() clockTimer
}

// clockTimer is a one-shot timer from a clock, with the semantics of
// time.Timer since Go 1.23: after Reset or Stop returns, no value from the
// earlier arming is received from C.
type clockTimer interface {
	// C returns the channel the timer sends the time on when it fires.
	C() <-chan time.Time
	// Reset arms the timer to fire after d (at once if d <= 0).
	Reset(d time.Duration)
	// Stop disarms the timer.
	Stop()
}

// systemClock is the Monitor's clock: the time package.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer() clockTimer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return systemTimer{t}
}

type systemTimer struct{ t *time.Timer }

func (s systemTimer) C() <-chan time.Time   { return s.t.C }
func (s systemTimer) Reset(d time.Duration) { s.t.Reset(d) }
func (s systemTimer) Stop()                 { s.t.Stop() }
