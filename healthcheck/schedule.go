package healthcheck

import (
	"context"
	"errors"
	"time"
)

// schedule is the Monitor's one scheduler goroutine: it starts every check
// when it is due and ends every ejection when its period is over.
func (m *Monitor) schedule() {
	defer m.wg.Done()
	timer := m.cfg.clock.NewTimer()
	defer timer.Stop()
	for {
		e, due, at, ok := m.next()
		if e != nil {
			if !m.dispatch(e, due) {
				return
			}
			continue
		}
		if ok {
			timer.Reset(at.Sub(m.cfg.clock.Now()))
			// Look again after arming: a clock that moved between next and
			// Reset (a test's fake clock can jump) would otherwise leave the
			// timer armed too late.
			if !m.cfg.clock.Now().Before(at) {
				timer.Stop()
				continue
			}
		}
		select {
		case <-timer.C():
		case <-m.wake:
			timer.Stop()
		case <-m.ctx.Done():
			return
		}
	}
}

// next ends the ejections that are over and takes the first due target off
// the heap, if any, with the time it was due. Otherwise it returns when the
// next event is (ok false: none).
func (m *Monitor) next() (e *entry, due, at time.Time, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.clock.Now()
	m.endEjections(now)
	if h := m.due.peek(); h != nil && !h.next.After(now) {
		m.due.pop()
		h.running = true
		return h, h.next, time.Time{}, false
	}
	if h := m.due.peek(); h != nil {
		at, ok = h.next, true
	}
	if h := m.ejected.peek(); h != nil && (!ok || h.ejectUntil.Before(at)) {
		at, ok = h.ejectUntil, true
	}
	return nil, time.Time{}, at, ok
}

// dispatch waits for a free slot and starts e's check in a goroutine. It
// returns false when the Monitor is closing.
func (m *Monitor) dispatch(e *entry, due time.Time) bool {
	if err := m.sem.Acquire(m.ctx, 1); err != nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || e.removed {
		m.sem.Release(1)
		return !m.closed
	}
	ctx, cancel := ContextWithTimeout(m.ctx, m.cfg.timeout)
	e.cancel = cancel
	m.inFlight++
	m.wg.Add(1) // m.closed is false under m.mu: Close has not reached Wait
	go m.run(ctx, cancel, e, due)
	return true
}

// run is one check's goroutine. The check starts, for the record, when
// the goroutine runs: waiting for a slot and for the Go scheduler counts as
// lateness, not as the target's latency.
func (m *Monitor) run(ctx context.Context, cancel context.CancelFunc, e *entry, due time.Time) {
	defer m.wg.Done()
	start := m.cfg.clock.Now()
	err := m.checker.Check(ctx, e.t)
	cancel()
	m.sem.Release(1)
	m.record(e, due, start, err)
}

// record keeps a check's result, applies the thresholds and schedules the
// next check.
func (m *Monitor) record(e *entry, due, start time.Time, err error) {
	end := m.cfg.clock.Now()
	r := Result{Time: start, Latency: end.Sub(start), OK: err == nil}
	if err != nil {
		var ce *CheckError
		if errors.As(err, &ce) {
			r.Reason = ce.Reason
		} else { // a custom checker's plain error
			r.Reason = describe(err, m.cfg.timeout)
		}
	}
	m.mu.Lock()
	m.inFlight--
	if m.closed || e.removed {
		m.mu.Unlock()
		return
	}
	e.running, e.cancel = false, nil
	if start.Sub(due) > m.cfg.interval/10 {
		m.late++
	}
	m.checks++
	if !r.OK {
		m.failures++
	}
	if len(e.results) < m.cfg.history {
		e.results = append(e.results, r)
	} else {
		e.results[e.oldest] = r
		e.oldest = (e.oldest + 1) % len(e.results)
	}
	m.judge(e, r, end)

	// The next check is due an interval after this one started: the
	// cadence does not stretch by the time checks take, and a check that
	// started late (all slots busy) never makes the next one come sooner,
	// which under overload would probe targets more often than configured
	// and keep every slot busy catching up. A check that overran the next
	// due time is followed at once.
	e.next = start.Add(m.cfg.interval + m.jitter())
	if e.next.Before(end) {
		e.next = end
	}
	m.due.push(e)
	head := e.dueIdx == 0
	m.mu.Unlock()
	if head {
		m.poke()
	}
	if f := m.cfg.onResult; f != nil {
		f(e.t.ID, due, r)
	}
}

// jitter returns a uniform random offset in [-jitter, +jitter]; m.mu is
// held.
func (m *Monitor) jitter() time.Duration {
	j := m.cfg.jitter
	if j <= 0 {
		return 0
	}
	return time.Duration(m.cfg.rand()%uint64(2*j+1)) - j
}

// judge applies one result to e's health; m.mu is held.
func (m *Monitor) judge(e *entry, r Result, now time.Time) {
	old := e.condition()
	if r.OK {
		e.fail = 0
		e.succ++
		switch {
		case e.state == Healthy:
			return
		case e.fresh:
			e.reason = reasonFirstSuccess
		case e.succ >= m.cfg.healthy:
			e.reason = reasonSuccesses(e.succ)
		default:
			return
		}
		e.state, e.fresh = Healthy, false
	} else {
		e.succ = 0
		e.fail++
		switch {
		case e.state == Unhealthy: // the latest reason is the one that matters
			e.reason = r.Reason
			return
		case e.fail < m.cfg.unhealthy:
			return
		}
		e.state, e.reason = Unhealthy, r.Reason
	}
	e.since = now
	m.emit(e, old, now, e.reason)
}

// timeHeap is a min-heap of entries by a time: when the next check is due
// (the due heap) or when the ejection ends (the eject heap). Each entry
// keeps its position, so removing a target is O(log n). Ties go by ID, so
// schedules are reproducible.
type timeHeap struct {
	eject bool
	items []*entry
}

func (h *timeHeap) key(e *entry) time.Time {
	if h.eject {
		return e.ejectUntil
	}
	return e.next
}

func (h *timeHeap) setPos(e *entry, i int) {
	if h.eject {
		e.ejIdx = i
	} else {
		e.dueIdx = i
	}
}

func (h *timeHeap) pos(e *entry) int {
	if h.eject {
		return e.ejIdx
	}
	return e.dueIdx
}

func (h *timeHeap) len() int { return len(h.items) }

func (h *timeHeap) peek() *entry {
	if len(h.items) == 0 {
		return nil
	}
	return h.items[0]
}

func (h *timeHeap) push(e *entry) {
	h.items = append(h.items, e)
	h.setPos(e, len(h.items)-1)
	h.up(len(h.items) - 1)
}

func (h *timeHeap) pop() *entry {
	e := h.items[0]
	h.remove(e)
	return e
}

func (h *timeHeap) remove(e *entry) {
	i, last := h.pos(e), len(h.items)-1
	if i != last {
		h.swap(i, last)
	}
	h.items[last] = nil
	h.items = h.items[:last]
	h.setPos(e, -1)
	if i != last {
		h.down(i)
		h.up(i)
	}
}

func (h *timeHeap) less(i, j int) bool {
	a, b := h.key(h.items[i]), h.key(h.items[j])
	if a.Equal(b) {
		return h.items[i].t.ID < h.items[j].t.ID
	}
	return a.Before(b)
}

func (h *timeHeap) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.setPos(h.items[i], i)
	h.setPos(h.items[j], j)
}

func (h *timeHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h *timeHeap) down(i int) {
	n := len(h.items)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && h.less(r, l) {
			c = r
		}
		if !h.less(c, i) {
			return
		}
		h.swap(i, c)
		i = c
	}
}
