package flowtable

import "sync/atomic"

// The timing wheel finds the flows due for expiry without visiting the
// others, and without a timer or goroutine per flow.
//
// Each shard has wheelSize buckets, bucket b listing flows whose bucket tick
// is congruent to b. A flow's deadline is seen+1+timeout (see Sweep for why
// +1; timeout is the flow's effective one, see Table.timeoutOf); at tick c
// the sweep visits bucket c%wheelSize and, for each flow in it, re-reads the
// real deadline: a flow that is due is expired; one that a lookup refreshed
// meanwhile moves to the bucket of its new deadline. Lookups therefore never
// touch the wheel (they only raise seen), and a sweep's work is proportional
// to the flows it visits: the due ones, plus each refreshed or long-lived
// flow about once per timeout or per wheelSize ticks, whichever is longer.
//
// Every bucket is two lists: one for flows on probation (unreplied, see
// WithUnrepliedTimeout) and one for the others, so that eviction finds the
// unreplied flows, soonest due first, without visiting the rest. A list is
// named by one number, its index in heads: the buckets of the other flows,
// their overdue list, then the same for flows on probation.
//
// Invariant, kept under the shard's mutex: every flow sits either in the
// bucket of some tick B with swept < B <= deadline, so it is visited no
// later than at its deadline, or in the overdue list, which every sweep
// visits first; in the probation lists exactly when its probation flag is
// set. A pending flow (its create running) is linked with the earliest
// deadline it can have once published, and a sweep that finds it still
// pending moves it to the overdue list. Deadlines only grow (lookups, and a
// flow leaving probation) except through SetFlowTimeout, which relinks the
// flow, into the overdue list if its new deadline has passed.
const (
	wheelSize = 512 // > the default TCP idle timeout in ticks, so default flows are visited once
	wheelMask = wheelSize - 1
	overdue   = wheelSize     // list of flows already due when linked (bucket part of a list number)
	lists     = wheelSize + 1 // lists of one kind: the buckets and the overdue list
	probBase  = lists         // the probation lists' numbers start here
	noList    = 0xffff
)

// wheel is a shard's timing wheel.
type wheel[V any] struct {
	heads [2 * lists]*entry[V] // the buckets, then the overdue list; then the same on probation
	swept uint64               // last tick whose bucket has been visited
	cur   *entry[V]            // next entry the sweep in progress visits; nil otherwise
	// nprob counts the flows in the probation lists; written under the
	// shard's mutex, read without it by eviction, to skip shards with none.
	nprob atomic.Int32
	// total, the table's count of flows on probation, is kept with nprob.
	total *atomic.Int64
}

// listOf returns the list a flow with probation flag prob and deadline d
// belongs in at tick.
func listOf(prob bool, d, tick uint64) uint16 {
	b := uint16(d & wheelMask)
	if d <= tick {
		b = overdue
	}
	if prob {
		b += probBase
	}
	return b
}

// link puts e in the bucket of its deadline d, or in the overdue list if d
// is not after tick, the coarse clock, among the probation lists if e is on
// probation; the shard's mutex is held.
func (w *wheel[V]) link(e *entry[V], d, tick uint64) {
	w.linkTo(e, listOf(e.state&stateProbation != 0, d, tick))
}

// linkTo puts e at the head of list b; the shard's mutex is held.
func (w *wheel[V]) linkTo(e *entry[V], b uint16) {
	e.list = b
	e.prev = nil
	e.next = w.heads[b]
	if e.next != nil {
		e.next.prev = e
	}
	w.heads[b] = e
	if b >= probBase {
		w.nprob.Add(1)
		w.total.Add(1)
	}
}

// unlink takes e out of its bucket; the shard's mutex is held. A sweep in
// progress that was to visit e next visits e's successor instead.
func (w *wheel[V]) unlink(e *entry[V]) {
	if e.list == noList {
		return
	}
	if w.cur == e {
		w.cur = e.next
	}
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		w.heads[e.list] = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	}
	if e.list >= probBase {
		w.nprob.Add(-1)
		w.total.Add(-1)
	}
	e.prev, e.next, e.list = nil, nil, noList
}
