package healthcheck

import "time"

// Clock is the Monitor's source of time: when checks are due, when
// ejections end, and the times in statuses and changes. Tests inject a fake
// clock and advance it explicitly, so threshold and schedule tests are exact
// and never sleep. Network timeouts inside a check are real time whatever
// the clock.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a stopped timer. The Monitor arms it with Reset.
	NewTimer() Timer
}

// Timer is a one-shot timer from a Clock, with the semantics of time.Timer
// since Go 1.23: after Reset or Stop returns, no value from the earlier
// arming is received from C.
type Timer interface {
	// C returns the channel the timer sends the time on when it fires.
	C() <-chan time.Time
	// Reset arms the timer to fire after d (at once if d <= 0).
	Reset(d time.Duration)
	// Stop disarms the timer.
	Stop()
}

// systemClock is the default Clock: the time package.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer() Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return systemTimer{t}
}

type systemTimer struct{ t *time.Timer }

func (s systemTimer) C() <-chan time.Time   { return s.t.C }
func (s systemTimer) Reset(d time.Duration) { s.t.Reset(d) }
func (s systemTimer) Stop()                 { s.t.Stop() }
