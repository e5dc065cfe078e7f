package sticky

import "time"

// clock is a policy's time source: the user's (WithClock) or the runtime's.
type clock struct {
	wall func() time.Time // nil: time.Now
	base time.Time        // the first reading; table times count from it
}

func newClock(wall func() time.Time) clock {
	c := clock{wall: wall}
	c.base = c.Now()
	return c
}

// Now returns the wall time, for cookie expiry dates that other nodes and
// browsers must understand.
func (c *clock) Now() time.Time {
	if c.wall == nil {
		return time.Now()
	}
	return c.wall()
}

// since returns table time: nanoseconds since the first reading. With the
// runtime's clock that is one monotonic reading (time.Since), half the cost
// of time.Now, and immune to steps of the wall clock.
func (c *clock) since() int64 {
	if c.wall == nil {
		return int64(time.Since(c.base))
	}
	return int64(c.wall().Sub(c.base))
}
