package healthcheck

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// Monitor runs a Checker against a changing set of targets and keeps, per
// target, its health from active checks, its ejection from passive signals,
// and enough history to say why.
//
// One scheduler goroutine keeps the targets in a min-heap by the time their
// next check is due and starts due checks, each in its own goroutine, while
// a semaphore bounds how many run at once (WithMaxConcurrent). No goroutine
// sleeps per target between checks, so the cost of a Monitor is that of its
// checks, whatever the number of targets. The Checker is called from those
// check goroutines, for many targets at once but never twice at once for
// one target. Changes are reported to the WithOnChange function, from one
// goroutine of its own.
//
// Build a Monitor with New; the zero Monitor is not usable. All methods
// are safe for concurrent use. Close stops everything.
type Monitor struct {
	cfg     config
	checker Checker // nil: health checking off, every target healthy
	sem     *semaphore.Weighted
	ctx     context.Context // ends at Close: the scheduler and every check
	cancel  context.CancelFunc
	wake    chan struct{}  // buffered 1: the earliest due time may have moved
	wg      sync.WaitGroup // the scheduler and the checks in flight
	notes   *notifier      // nil without WithOnChange

	mu       sync.Mutex // guards the fields below and the fields of every entry
	closed   bool
	targets  map[string]*entry
	due      timeHeap // targets waiting for their next check, by entry.next
	ejected  timeHeap // ejected targets, by entry.ejectUntil
	inFlight int
	checks   uint64 // completed checks
	failures uint64 // completed checks that failed
	late     uint64 // checks started more than interval/10 after due
	ejects   uint64 // ejections
	refused  uint64 // ejections refused by the cap
}

// entry is the state of one target. Its fields are guarded by Monitor.mu.
type entry struct {
	t       Target
	removed bool

	// schedule
	dueIdx  int                // position in Monitor.due, -1 when not waiting
	next    time.Time          // when the next check is due
	running bool               // taken off the heap for a check (waiting for a slot or running)
	cancel  context.CancelFunc // ends the running check; nil when none runs

	// active health
	state      State
	fresh      bool // never healthy yet: one success makes it healthy
	reason     string
	since      time.Time
	succ, fail int      // consecutive results toward the thresholds
	results    []Result // ring of the last cfg.history results
	oldest     int      // index of the oldest result once the ring is full

	// passive ejection
	pfail       int // consecutive reported failures
	ejIdx       int // position in Monitor.ejected, -1 when not ejected
	ejectUntil  time.Time
	ejectReason string
}

func (e *entry) condition() Condition { return Condition{State: e.state, Ejected: e.ejIdx >= 0} }

// New returns a Monitor that checks targets with c, or an error listing
// every invalid option and target. A nil c turns health checking off: every
// target is reported Healthy and never checked (passive ejection still
// works). The Monitor runs until Close.
func New(c Checker, opts ...Option) (*Monitor, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Monitor{
		cfg:     cfg,
		checker: c,
		sem:     semaphore.NewWeighted(int64(cfg.maxConcurrent)),
		ctx:     ctx,
		cancel:  cancel,
		wake:    make(chan struct{}, 1),
		targets: make(map[string]*entry, len(cfg.targets)),
		ejected: timeHeap{eject: true},
	}
	now := cfg.clock.Now()
	for _, t := range cfg.targets {
		m.add(t, now, cfg.initial, true)
	}
	m.cfg.targets = nil
	if cfg.onChange != nil {
		m.notes = newNotifier(cfg.onChange)
	}
	m.wg.Add(1)
	go m.schedule()
	return m, nil
}

// Add starts monitoring targets. The first check of each is due at a random
// moment inside the first interval (or WithFirstCheckWithin's window); until a check passes, a target is in the
// initial state (see WithInitialState). If any target is invalid or its ID
// is already monitored, nothing is added and the error lists every problem.
func (m *Monitor) Add(ts ...Target) error { return m.addAll(ts, m.cfg.initial, true) }

// AddWithState starts monitoring targets whose health is already known, in
// state s: for a caller that replaces a Monitor with one of new settings
// and must not send its targets back to the initial state meanwhile (a
// flap of every target). Unlike new targets, they follow the thresholds
// from their first check: a Healthy one needs the unhealthy threshold of
// failures to go down, an Unhealthy one the healthy threshold of successes
// to come up. The first check is still due at a random moment inside the
// first interval. Validation is as for Add.
func (m *Monitor) AddWithState(s State, ts ...Target) error {
	if s != Healthy && s != Unhealthy {
		return fmt.Errorf("healthcheck: %w: state %d is unknown", ErrInvalidOption, s)
	}
	return m.addAll(ts, s, false)
}

func (m *Monitor) addAll(ts []Target, s State, fresh bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if err := m.checkNew(ts); err != nil {
		return err
	}
	now := m.cfg.clock.Now()
	for _, t := range ts {
		m.add(t, now, s, fresh)
	}
	m.poke()
	return nil
}

// checkNew validates targets to add; m.mu is held.
func (m *Monitor) checkNew(ts []Target) error {
	errs := []error{validateTargets(ts)}
	for i, t := range ts {
		if _, ok := m.targets[t.ID]; ok {
			errs = append(errs, fmt.Errorf("healthcheck: target[%d] %q: %w: already monitored", i, t.ID, ErrDuplicateTarget))
		}
	}
	return errors.Join(errs...)
}

// add adds a valid target with a new ID in state s; fresh targets turn
// healthy at their first success. m.mu is held or m is not shared.
func (m *Monitor) add(t Target, now time.Time, s State, fresh bool) {
	e := &entry{t: t, dueIdx: -1, ejIdx: -1, since: now, state: s, reason: "not checked yet"}
	e.fresh = fresh && s == Unhealthy
	m.targets[t.ID] = e
	if m.checker == nil {
		e.state, e.fresh, e.reason = Healthy, false, "health checking off"
		return
	}
	window := m.cfg.interval
	if m.cfg.firstWithin > 0 {
		window = m.cfg.firstWithin
	}
	e.next = now.Add(time.Duration(m.cfg.rand() % uint64(window)))
	m.due.push(e)
}

// Remove stops monitoring the targets with the given IDs, at once: a check
// in flight is canceled and its result dropped, and no change is reported
// for them. If any ID is unknown, nothing is removed.
func (m *Monitor) Remove(ids ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	var errs []error
	for _, id := range ids {
		if _, ok := m.targets[id]; !ok {
			errs = append(errs, fmt.Errorf("healthcheck: remove %q: %w", id, ErrUnknownTarget))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, id := range ids {
		if e := m.targets[id]; e != nil {
			m.remove(e)
		}
	}
	m.poke()
	return nil
}

// remove drops e; m.mu is held.
func (m *Monitor) remove(e *entry) {
	delete(m.targets, e.t.ID)
	e.removed = true
	if e.dueIdx >= 0 {
		m.due.remove(e)
	}
	if e.ejIdx >= 0 {
		m.ejected.remove(e)
	}
	if e.cancel != nil {
		e.cancel()
		e.cancel = nil
	}
}

// Update makes ts the monitored set: targets not in it are removed as by
// Remove, new ones are added as by Add, and targets whose ID and Addr stay
// keep their state and schedule. A target whose Addr changed starts afresh,
// like a new one. If any target is invalid, nothing changes.
func (m *Monitor) Update(ts []Target) error {
	if err := validateTargets(ts); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	keep := make(map[string]Target, len(ts))
	for _, t := range ts {
		keep[t.ID] = t
	}
	for id, e := range m.targets {
		if t, ok := keep[id]; !ok || t.Addr != e.t.Addr {
			m.remove(e)
		}
	}
	now := m.cfg.clock.Now()
	for _, t := range ts {
		if _, ok := m.targets[t.ID]; !ok {
			m.add(t, now, m.cfg.initial, true)
		}
	}
	m.poke()
	return nil
}

// Targets returns the monitored targets, sorted by ID.
func (m *Monitor) Targets() []Target {
	m.mu.Lock()
	defer m.mu.Unlock()
	ts := make([]Target, 0, len(m.targets))
	for _, e := range m.targets {
		ts = append(ts, e.t)
	}
	slices.SortFunc(ts, func(a, b Target) int { return cmp.Compare(a.ID, b.ID) })
	return ts
}

// Status returns what the Monitor knows about the target with the given ID.
func (m *Monitor) Status(id string) (Status, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.targets[id]
	if !ok {
		return Status{}, false
	}
	return m.status(e), true
}

// Statuses returns the status of every target, sorted by ID.
func (m *Monitor) Statuses() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := make([]Status, 0, len(m.targets))
	for _, e := range m.targets {
		st = append(st, m.status(e))
	}
	slices.SortFunc(st, func(a, b Status) int { return cmp.Compare(a.Target.ID, b.Target.ID) })
	return st
}

// status copies e's state; m.mu is held.
func (m *Monitor) status(e *entry) Status {
	s := Status{
		Target:          e.t,
		Condition:       e.condition(),
		Reason:          e.reason,
		Since:           e.since,
		Successes:       e.succ,
		Failures:        e.fail,
		Checking:        e.running,
		PassiveFailures: e.pfail,
		EjectionReason:  e.ejectReason,
		Results:         make([]Result, 0, len(e.results)),
	}
	if e.dueIdx >= 0 {
		s.NextCheck = e.next
	}
	if e.ejIdx >= 0 {
		s.EjectedUntil = e.ejectUntil
	}
	s.Results = append(s.Results, e.results[e.oldest:]...)
	s.Results = append(s.Results, e.results[:e.oldest]...)
	return s
}

// Stats returns the Monitor's counts and counters. It walks the targets
// under the lock: cheap, but not free with many thousands of targets.
func (m *Monitor) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Stats{
		Targets:          len(m.targets),
		Ejected:          m.ejected.len(),
		InFlight:         m.inFlight,
		Checks:           m.checks,
		Failures:         m.failures,
		Late:             m.late,
		Ejections:        m.ejects,
		EjectionsRefused: m.refused,
	}
	for _, e := range m.targets {
		if e.state == Healthy {
			s.Healthy++
		} else {
			s.Unhealthy++
		}
		if e.condition().Serving() {
			s.Serving++
		}
	}
	return s
}

// Close stops the scheduler, cancels the checks in flight and waits for
// them, then delivers the changes already queued for WithOnChange's
// function. Later calls to other methods return ErrClosed; Close itself
// may be called again and returns nil. It does not close the Checker, which
// belongs to the caller.
func (m *Monitor) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	if m.notes != nil {
		m.notes.close()
	}
	return nil
}

// poke tells the scheduler that the earliest event may have moved.
func (m *Monitor) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// emit queues a change for WithOnChange's function; m.mu is held, so
// changes queue in the order they happen.
func (m *Monitor) emit(e *entry, old Condition, now time.Time, reason string) {
	if m.notes != nil {
		m.notes.push(Change{Target: e.t, Time: now, Old: old, New: e.condition(), Reason: reason})
	}
}
