package flowtable

import (
	"fmt"
	"reflect"
	"time"
)

// WithIdleCheck sets a function that a sweep asks before it expires a flow
// whose idle timeout has passed according to its lookups. It is for flows
// whose traffic the table cannot see: a TCP proxy that splices bytes in the
// kernel never looks its flows up per read, but the kernel knows when each
// socket last moved data (TCP_INFO).
//
// f returns how long ago the flow was last active by the owner's own
// reckoning, with ok true; the sweep then counts the flow as seen at that
// moment (now minus idle, on the sweep's clock, in whole sweep intervals)
// if that is later than its last lookup, and keeps it if its idle timeout
// has not passed since. With ok false, or an activity no later than the last
// lookup, the flow expires as usual and the expiry callback runs.
//
// f is called only for flows that are due, once per flow per sweep, on the
// sweeping goroutine with the flow's shard locked: it must be quick (a
// system call or two), must not block, and must not call the table's
// methods. V must be the table's value type, or New returns an error.
// Default: nil, flows expire on lookups alone.
func WithIdleCheck[V any](f func(k Key, v V) (idle time.Duration, ok bool)) Option {
	return func(c *config) {
		if f != nil {
			c.idleCheck = f
		} else {
			c.idleCheck = nil
		}
	}
}

// idleCheckOf returns the idle check set by WithIdleCheck as a function of
// the table's value type, or an error if it was set for another type.
func idleCheckOf[V any](f any) (func(Key, V) (time.Duration, bool), error) {
	if f == nil {
		return nil, nil
	}
	g, ok := f.(func(Key, V) (time.Duration, bool))
	if !ok {
		return nil, fmt.Errorf("%w: idle check is a %T, want func(flowtable.Key, %v) (time.Duration, bool) for this table",
			ErrInvalidOption, f, reflect.TypeFor[V]())
	}
	return g, nil
}

// raiseFromIdleCheck asks the idle check about the due flow e, last seen at
// tick w, and raises its seen tick to the activity the check reports. It
// reports whether seen was raised. The shard's mutex and t.sweepMu are held,
// so seen cannot drop to 0 meanwhile; lookups may raise it concurrently,
// which the compare-and-swap respects.
func (t *Table[V]) raiseFromIdleCheck(e *entry[V], w uint64) bool {
	idle, ok := t.idleCheck(e.key.key(), e.val)
	if !ok {
		return false
	}
	s := t.tickAt(t.sweepNow.Add(-max(idle, 0)))
	for s > w {
		if e.seen.CompareAndSwap(w, s) {
			return true
		}
		w = e.seen.Load()
	}
	return false
}
