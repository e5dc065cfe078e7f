package healthcheck

import (
	"fmt"
	"time"
)

// ReportSuccess tells the Monitor that a real connection or request to the
// target succeeded: its count of consecutive reported failures starts over.
// Proxies call it; it takes the Monitor's lock briefly and allocates
// nothing.
func (m *Monitor) ReportSuccess(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.lookup(id)
	if err != nil {
		return err
	}
	e.pfail = 0
	if e.ejIdx < 0 {
		e.ejectReason = "" // a refused ejection is old news
	}
	return nil
}

// ReportFailure tells the Monitor that a real connection or request to the
// target failed, and why in words ("connection reset", "502 from target").
// After the consecutive failures set by WithEjection, the target is ejected
// for the ejection period unless the cap of WithMaxEjectedPercent is
// reached. Failures reported while the target is ejected are ignored: they
// come from traffic sent before the ejection.
func (m *Monitor) ReportFailure(id, reason string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.lookup(id)
	if err != nil {
		return err
	}
	if e.ejIdx >= 0 {
		return nil
	}
	if reason == "" {
		reason = "failure reported"
	}
	e.pfail++
	if m.cfg.ejectFailures == 0 || e.pfail < m.cfg.ejectFailures {
		return nil
	}
	n, total := m.ejected.len(), len(m.targets)
	if limit := total * m.cfg.maxEjectedPct / 100; n >= limit {
		m.refused++
		e.ejectReason = fmt.Sprintf("not ejected after %d consecutive failures (last: %s): %d of %d targets already ejected, cap %d%%",
			e.pfail, reason, n, total, m.cfg.maxEjectedPct)
		return nil
	}
	now := m.cfg.clock.Now()
	old := e.condition()
	e.ejectUntil = now.Add(m.cfg.ejectPeriod)
	e.ejectReason = reasonFailures(e.pfail, reason)
	m.ejected.push(e)
	m.ejects++
	m.emit(e, old, now, reasonEjected(e.ejectReason))
	if e.ejIdx == 0 {
		m.poke()
	}
	return nil
}

// endEjections returns the targets whose ejection is over to service; m.mu
// is held.
func (m *Monitor) endEjections(now time.Time) {
	for {
		e := m.ejected.peek()
		if e == nil || e.ejectUntil.After(now) {
			return
		}
		old := e.condition()
		m.ejected.pop()
		e.pfail, e.ejectReason, e.ejectUntil = 0, "", time.Time{}
		m.emit(e, old, now, reasonEjectionEnded(m.cfg.ejectPeriod))
	}
}

// lookup returns the entry of id; m.mu is held.
func (m *Monitor) lookup(id string) (*entry, error) {
	if m.closed {
		return nil, ErrClosed
	}
	e, ok := m.targets[id]
	if !ok {
		return nil, fmt.Errorf("healthcheck: %q: %w", id, ErrUnknownTarget)
	}
	return e, nil
}
