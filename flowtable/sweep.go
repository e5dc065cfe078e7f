package flowtable

import "time"

// sweepBatch is the most flows a sweep visits per hold of a shard's mutex.
// Lookups never wait for a sweep (they take no lock); this bounds how long
// LoadOrCreate and Delete on that one shard may wait, whatever the number
// of flows due at once.
const sweepBatch = 256

// Sweep advances the table's coarse clock to now and expires every flow that
// is due, calling the expiry callback for each, and returns how many it
// expired. The sweeper goroutine calls it every sweep interval with the
// clock's reading; with WithManualSweep the caller does, which makes expiry
// exact in tests. The clock never goes backwards: a now earlier than a
// previous sweep's expires what is due at the previous one. Sweeps are
// serialised; Sweep must not be called from the expiry callback. After
// Close it does nothing.
//
// # Expiry rule
//
// The coarse clock counts intervals: tick(now) = 1 + (now - epoch) /
// interval, the epoch being the clock's reading in New. A lookup stamps the
// flow with the current tick, the interval it happened in, so it happened
// before epoch + tick*interval. A flow last seen at tick s with an idle
// timeout of T intervals (rounded up) is due from tick s+1+T, that is from
// epoch + (s+T)*interval: at least T intervals after its last lookup, never
// sooner; and with a sweep every interval it is expired by the first sweep
// at or after that moment, at most its timeout plus one interval after its
// last lookup.
//
// A sweep visits only the wheel buckets of the ticks since the last sweep
// (all of them once if more than wheelSize ticks passed) and the flows made
// due by SetFlowTimeout; it locks one shard at a time for at most sweepBatch
// flows, and calls the expiry callback with no lock held.
func (t *Table[V]) Sweep(now time.Time) int {
	t.sweepMu.Lock()
	defer t.sweepMu.Unlock()
	if t.closed.Load() {
		return 0
	}
	t.sweepNow = now
	c := t.tickAt(now)
	if cur := t.tick.Load(); c > cur {
		t.tick.Store(c)
	} else {
		c = cur
	}
	t.flush() // callbacks left over by a previous sweep whose callback panicked
	n := 0
	for i := range t.shards {
		n += t.sweepShard(&t.shards[i], c)
	}
	return n
}

// tickAt converts a clock reading into a tick of the coarse clock.
func (t *Table[V]) tickAt(now time.Time) uint64 {
	d := now.Sub(t.epoch)
	if d < 0 {
		return 1
	}
	return 1 + uint64(d/t.cfg.interval)
}

// sweepShard visits the overdue list of s and its buckets for the ticks up
// to c, expires the due flows, and returns how many; t.sweepMu is held.
func (t *Table[V]) sweepShard(s *shard[V], c uint64) int {
	s.mu.Lock()
	budget := sweepBatch
	n := t.sweepList(s, overdue, c, &budget)
	n += t.sweepList(s, probBase+overdue, c, &budget)
	if c > s.swept+wheelSize {
		s.swept = c - wheelSize // one revolution visits every bucket
	}
	for s.swept < c {
		b := uint16((s.swept + 1) & wheelMask)
		n += t.sweepList(s, b, c, &budget)
		n += t.sweepList(s, probBase+b, c, &budget)
		s.swept++
	}
	s.mu.Unlock()
	t.flush()
	return n
}

// sweepList visits the flows of list b of s at tick c and returns how many
// it expired. Every *budget visits it lets the shard's writers in and runs
// the callbacks of what is expired so far without the lock; s.cur keeps its
// place meanwhile (unlink moves it on if its entry leaves the list). s.mu
// and t.sweepMu are held.
func (t *Table[V]) sweepList(s *shard[V], b uint16, c uint64, budget *int) int {
	n := 0
	s.cur = s.heads[b]
	for s.cur != nil {
		if *budget == 0 {
			s.mu.Unlock()
			t.flush()
			s.mu.Lock()
			*budget = sweepBatch
			continue
		}
		*budget--
		e := s.cur
		s.cur = e.next
		if t.visit(s, e, b, c) {
			n++
		}
	}
	return n
}

// visit checks a flow of list b at tick c: it takes it off probation if it
// met the rule, expires it if it is due, moves it to the list of its new
// deadline if a lookup refreshed it (or it came from an overdue list, or
// left probation), and leaves it in b if its deadline is a whole number of
// revolutions ahead. It reports whether it expired the flow; s.mu and
// t.sweepMu are held.
func (t *Table[V]) visit(s *shard[V], e *entry[V], b uint16, c uint64) bool {
	asked := false
	for {
		w := e.seen.Load()
		if w == 0 {
			// Pending: its create is running. Look again at the next
			// sweep, when it may be live with a deadline already due.
			if to := listOf(e.state&stateProbation != 0, 0, c); b != to {
				s.unlink(e)
				s.linkTo(e, to)
			}
			return false
		}
		t.confirm(e, w) // leaving probation moves it to the other lists below
		d := w + 1 + uint64(t.timeoutOf(e))
		if d > c {
			if to := listOf(e.state&stateProbation != 0, d, c); to != b {
				s.unlink(e)
				s.linkTo(e, to)
			}
			return false
		}
		if t.idleCheck != nil && !asked {
			// Due by lookups; ask the owner whether traffic the table
			// cannot see (spliced TCP) moved it meanwhile.
			asked = true
			if t.raiseFromIdleCheck(e, w) {
				continue // re-read seen: the flow may now be kept
			}
		}
		// A lookup racing with us either raised seen first, and the CAS
		// fails and we look again, or finds 0 and reports no flow.
		if e.seen.CompareAndSwap(w, 0) {
			break
		}
	}
	t.removeIndex(s, e.key.hash(t.seed), e)
	s.unlink(e)
	t.release(&e.key)
	p := e.key.protoIdx()
	s.cnt[p].expired.Add(1)
	t.expired = append(t.expired, expiredFlow[V]{key: e.key, val: e.val})
	return true
}

// flush calls the expiry callback for the flows expired so far, with no
// shard lock held, and forgets them; t.sweepMu is held. A callback that
// panics leaves the flows after it for the next sweep, each called once.
func (t *Table[V]) flush() int {
	n := 0
	for t.expNext < len(t.expired) {
		f := t.expired[t.expNext]
		t.expired[t.expNext] = expiredFlow[V]{} // drop the reference to the value
		t.expNext++
		n++
		if t.onExpire != nil {
			t.onExpire(f.key.key(), f.val)
		}
	}
	t.expired, t.expNext = t.expired[:0], 0
	return n
}

// sweeper runs Sweep every interval until Close.
func (t *Table[V]) sweeper(tk *time.Ticker) {
	defer close(t.done)
	defer tk.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tk.C:
			t.Sweep(t.cfg.clock())
		}
	}
}
