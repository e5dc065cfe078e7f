package balancer

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// MaxWeight is the largest weight a target may have. Weights run from 0 to
// MaxWeight; 0 means "no new traffic" (established connections are not the
// balancer's business and continue).
const MaxWeight = 100

// DefaultWeight is the weight the lb package gives a target registered without
// one. The balancer itself takes weights as given: a Target's zero Weight is 0.
const DefaultWeight = 1

// Health is the health mark of a target, set from outside the balancer (by a
// healthcheck.Monitor, by the lb package, or by the user). The zero value is
// Healthy, so a target added without a mark receives traffic, which is also
// what "health checking turned off" means.
//
// healthcheck.State's zero value is the opposite (Unhealthy: a target
// nobody vouched for gets no traffic), so never convert one into the other
// by number: the way across is HealthOf(condition.Serving()).
type Health uint8

const (
	// Healthy targets receive new traffic when their weight is above 0.
	Healthy Health = iota
	// Unhealthy targets receive no new traffic.
	Unhealthy
)

// HealthOf returns the mark of a target that is serving or not: Healthy for
// true, Unhealthy for false. It is how a health checker's verdict (such as
// healthcheck.Condition.Serving) becomes a balancer's mark.
func HealthOf(serving bool) Health {
	if serving {
		return Healthy
	}
	return Unhealthy
}

// String returns "healthy" or "unhealthy".
func (h Health) String() string {
	switch h {
	case Healthy:
		return "healthy"
	case Unhealthy:
		return "unhealthy"
	}
	return "health(" + strconv.Itoa(int(h)) + ")"
}

// Target is one destination a balancer can pick: its identity, where to
// reach it and how much traffic it should take.
//
// Targets are values: the balancer copies them on the way in and out, so
// changing a Target after Add does nothing; use SetWeight and SetHealth.
type Target struct {
	// ID names the target uniquely within a balancer. It is also the input
	// of the consistent-hash table, so two nodes that give their targets the
	// same IDs and weights build identical tables.
	ID string
	// Addr is where the target is reached, as "host:port" (IPv6 hosts in
	// brackets). The balancer never dials it; it checks the form only.
	Addr string
	// Weight is the share of new traffic, 0..MaxWeight. 0 takes no new
	// traffic.
	Weight int
	// Health is the target's health mark; only Healthy targets are picked.
	Health Health
}

// eligible reports whether the target may receive new traffic.
func (t *Target) eligible() bool { return t.Health == Healthy && t.Weight > 0 }

// validateTargets checks every target and the set as a whole, returning one
// error that lists every problem (errors.Join), or nil.
func validateTargets(ts []Target) error {
	var errs []error
	seen := make(map[string]int, len(ts))
	for i := range ts {
		t := &ts[i]
		name := fmt.Sprintf("target[%d]", i)
		if t.ID != "" {
			name = fmt.Sprintf("target[%d] %q", i, t.ID)
		}
		for _, err := range t.problems() {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		if t.ID == "" {
			continue
		}
		if j, dup := seen[t.ID]; dup {
			errs = append(errs, fmt.Errorf("%s: %w: id also used by target[%d]", name, ErrDuplicateTarget, j))
			continue
		}
		seen[t.ID] = i
	}
	return errors.Join(errs...)
}

// validate checks one target's fields, every problem at once.
func (t *Target) validate() error { return errors.Join(t.problems()...) }

// problems lists what is wrong with the target's fields.
func (t *Target) problems() []error {
	var errs []error
	if t.ID == "" {
		errs = append(errs, fmt.Errorf("%w: id is empty", ErrInvalidTarget))
	}
	if err := validateAddr(t.Addr); err != nil {
		errs = append(errs, err)
	}
	if t.Weight < 0 || t.Weight > MaxWeight {
		errs = append(errs, fmt.Errorf("%w: weight %d is out of range 0..%d", ErrInvalidTarget, t.Weight, MaxWeight))
	}
	if t.Health != Healthy && t.Health != Unhealthy {
		errs = append(errs, fmt.Errorf("%w: health %d is unknown", ErrInvalidTarget, t.Health))
	}
	return errs
}

func validateAddr(addr string) error {
	if addr == "" {
		return fmt.Errorf("%w: addr is empty", ErrInvalidTarget)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: addr %q is not host:port", ErrInvalidTarget, addr)
	}
	if host == "" {
		return fmt.Errorf("%w: addr %q has no host", ErrInvalidTarget, addr)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("%w: addr %q has port %q, want 1..65535", ErrInvalidTarget, addr, port)
	}
	return nil
}
