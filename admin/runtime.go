package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/lbkit/lbkit/lb"
)

// Changer is what a Runtime changes: *lb.LoadBalancer is one.
type Changer interface {
	AddTarget(group, addr string, opts ...lb.TargetOption) error
	RemoveTarget(group, id string) error
	SetWeight(group, id string, weight int) error
	DrainTarget(group, id string) error
	UndrainTarget(group, id string) error
	SetTargetHealthCheck(group, id string, enabled bool) error
}

// Runtime makes an operator's changes to a running load balancer (the
// runtime API: weights, drains, health checks on or off, targets added or
// removed) and remembers them as differences from the configuration, so
// that they outlive what would otherwise undo them:
//
//   - A reload replaces the load balancer's configuration with the file's,
//     which knows nothing of them. The program calls Reapply after each
//     reload: every change is made again, except those that no longer
//     apply (the target left the file, or the file now adds the target
//     that was added at run time), which are dropped and returned.
//   - A restart or a binary upgrade starts a new process. The program
//     saves the changes (Save, on every change: see OnChange) to a state
//     file and the new process restores them (Restore) before it serves.
//
// This is HAProxy's server-state file made the default: HAProxy loses
// run-time changes on a reload unless one is configured, and operators
// are surprised when a target they drained for maintenance takes traffic
// again because someone reloaded to rotate a certificate. To go back to
// the file, discard the changes (Reset, or DELETE /runtime) and reload.
//
// A Runtime is safe for concurrent use.
type Runtime struct {
	lb Changer

	mu      sync.Mutex // serialises changes, and guards the fields below
	changes []*Change  // in the order first made; none empty

	// OnChange, if set, is called after every change with the changes
	// then held, under the Runtime's lock (so calls come in order); a
	// program saves them there. Set it before the first change.
	OnChange func([]Change)
	// Now is the clock the changes are stamped with. Default time.Now.
	Now func() time.Time
}

// Change is what an operator changed on one target, relative to the
// configuration. Fields left nil (or false) are not changed.
type Change struct {
	Group  string `json:"group"`
	Target string `json:"target"`
	// Removed says the configured target of this ID was removed at run
	// time.
	Removed bool `json:"removed,omitempty"`
	// Added, if set, says a target of this ID was added at run time, with
	// this address and weight (after the removal, if Removed: replaced).
	Added *AddedTarget `json:"added,omitempty"`
	// Weight is the weight set at run time.
	Weight *int `json:"weight,omitempty"`
	// Drained says the target was drained (lb.LoadBalancer.DrainTarget).
	Drained bool `json:"drained,omitempty"`
	// HealthCheckOff says its health checks were turned off.
	HealthCheckOff bool `json:"health_check_off,omitempty"`
	// At is when it was last changed.
	At time.Time `json:"at"`
}

// AddedTarget is a target added at run time.
type AddedTarget struct {
	Address string `json:"address"`
	Weight  int    `json:"weight,omitempty"`
}

// DroppedChange is a change Reapply or Restore could not make again, and
// why.
type DroppedChange struct {
	Change Change `json:"change"`
	Reason string `json:"reason"`
}

// String describes a change in words, e.g. `web/a: drained, weight 5`.
func (c Change) String() string {
	var parts []string
	if c.Removed {
		parts = append(parts, "removed")
	}
	if c.Added != nil {
		w := "default weight"
		if c.Added.Weight != 0 {
			w = fmt.Sprintf("weight %d", c.Added.Weight)
		}
		parts = append(parts, fmt.Sprintf("added at %s, %s", c.Added.Address, w))
	}
	if c.Weight != nil {
		parts = append(parts, fmt.Sprintf("weight %d", *c.Weight))
	}
	if c.Drained {
		parts = append(parts, "drained")
	}
	if c.HealthCheckOff {
		parts = append(parts, "health checks off")
	}
	s := c.Group + "/" + c.Target + ":"
	for i, p := range parts {
		if i > 0 {
			s += ","
		}
		s += " " + p
	}
	return s
}

// NewRuntime returns a Runtime that changes l.
func NewRuntime(l Changer) *Runtime { return &Runtime{lb: l} }

// AddTarget adds a target to a group (lb.LoadBalancer.AddTarget): id
// defaults to the address, weight 0 to the default weight.
func (r *Runtime) AddTarget(group, id, addr string, weight int) error {
	if id == "" {
		id = addr
	}
	return r.change(group, id, func(c *Change) error {
		if err := r.lb.AddTarget(group, addr, targetOptions(id, weight)...); err != nil {
			return err
		}
		// After a removal of the file's target, this replaces it: both
		// are kept, to be made again in that order.
		c.Added = &AddedTarget{Address: addr, Weight: weight}
		c.Weight, c.Drained, c.HealthCheckOff = nil, false, false
		return nil
	})
}

func targetOptions(id string, weight int) []lb.TargetOption {
	opts := []lb.TargetOption{lb.WithTargetID(id)}
	if weight != 0 {
		opts = append(opts, lb.WithWeight(weight))
	}
	return opts
}

// RemoveTarget removes a target from a group (lb.LoadBalancer.RemoveTarget:
// it drains for the group's deregistration delay first).
func (r *Runtime) RemoveTarget(group, id string) error {
	return r.change(group, id, func(c *Change) error {
		if err := r.lb.RemoveTarget(group, id); err != nil {
			return err
		}
		// Added at run time and removed: nothing left, unless it
		// replaced a target of the file, which stays removed.
		*c = Change{Group: group, Target: id, Removed: c.Removed || c.Added == nil}
		return nil
	})
}

// SetWeight sets a target's weight.
func (r *Runtime) SetWeight(group, id string, weight int) error {
	return r.change(group, id, func(c *Change) error {
		if err := r.lb.SetWeight(group, id, weight); err != nil {
			return err
		}
		if c.Added != nil {
			c.Added.Weight = weight
			return nil
		}
		c.Weight = &weight
		return nil
	})
}

// SetDrained drains a target or brings it back.
func (r *Runtime) SetDrained(group, id string, drained bool) error {
	return r.change(group, id, func(c *Change) error {
		f := r.lb.UndrainTarget
		if drained {
			f = r.lb.DrainTarget
		}
		if err := f(group, id); err != nil {
			return err
		}
		c.Drained = drained
		return nil
	})
}

// SetHealthCheck turns a target's health checks on or off.
func (r *Runtime) SetHealthCheck(group, id string, enabled bool) error {
	return r.change(group, id, func(c *Change) error {
		if err := r.lb.SetTargetHealthCheck(group, id, enabled); err != nil {
			return err
		}
		c.HealthCheckOff = !enabled
		return nil
	})
}

// change applies f to the change of one target, under the lock, and keeps
// the result unless f fails or leaves nothing changed.
func (r *Runtime) change(group, id string, f func(*Change) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := slices.IndexFunc(r.changes, func(c *Change) bool { return c.Group == group && c.Target == id })
	c := &Change{Group: group, Target: id}
	if i >= 0 {
		cp := *r.changes[i]
		c = &cp
	}
	if err := f(c); err != nil {
		return err
	}
	c.At = r.now()
	switch {
	case c.empty() && i >= 0:
		r.changes = slices.Delete(r.changes, i, i+1)
	case c.empty():
	case i >= 0:
		r.changes[i] = c
	default:
		r.changes = append(r.changes, c)
	}
	r.notifyLocked()
	return nil
}

func (c *Change) empty() bool {
	return c.Added == nil && !c.Removed && c.Weight == nil && !c.Drained && !c.HealthCheckOff
}

func (r *Runtime) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runtime) notifyLocked() {
	if r.OnChange != nil {
		r.OnChange(r.copyLocked())
	}
}

func (r *Runtime) copyLocked() []Change {
	out := make([]Change, len(r.changes))
	for i, c := range r.changes {
		out[i] = *c
		if c.Added != nil {
			a := *c.Added
			out[i].Added = &a
		}
		if c.Weight != nil {
			w := *c.Weight
			out[i].Weight = &w
		}
	}
	return out
}

// Changes returns the changes held, in the order first made.
func (r *Runtime) Changes() []Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.copyLocked()
}

// Reset forgets every change. It changes nothing in the load balancer:
// reload the configuration to go back to it.
func (r *Runtime) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = nil
	r.notifyLocked()
}

// Reapply makes every change again, after the load balancer was
// reconfigured from the file (which knows nothing of them). A change that
// can no longer be made (its group or target left the file; a target added
// at run time is now in the file) is dropped, and returned with the
// reason.
func (r *Runtime) Reapply() []DroppedChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.applyLocked(r.copyLocked())
}

// applyLocked makes changes (a copy) in order and keeps those made.
func (r *Runtime) applyLocked(changes []Change) []DroppedChange {
	var dropped []DroppedChange
	r.changes = r.changes[:0]
	for _, c := range changes {
		if err := r.makeLocked(c); err != nil {
			dropped = append(dropped, DroppedChange{Change: c, Reason: err.Error()})
			continue
		}
		cp := c
		r.changes = append(r.changes, &cp)
	}
	if len(dropped) > 0 {
		r.notifyLocked()
	}
	return dropped
}

// makeLocked makes one change in the load balancer.
func (r *Runtime) makeLocked(c Change) error {
	if c.Removed {
		if err := r.lb.RemoveTarget(c.Group, c.Target); err != nil {
			return err
		}
		if c.Added == nil {
			return nil
		}
	}
	if c.Added != nil {
		if err := r.lb.AddTarget(c.Group, c.Added.Address, targetOptions(c.Target, c.Added.Weight)...); err != nil {
			return err
		}
	}
	var errs []error
	if c.Weight != nil {
		errs = append(errs, r.lb.SetWeight(c.Group, c.Target, *c.Weight))
	}
	if c.Drained {
		errs = append(errs, r.lb.DrainTarget(c.Group, c.Target))
	}
	if c.HealthCheckOff {
		errs = append(errs, r.lb.SetTargetHealthCheck(c.Group, c.Target, false))
	}
	return errors.Join(errs...)
}

// savedState is the saved form of a Runtime's changes.
type savedState struct {
	Version int      `json:"version"`
	Changes []Change `json:"changes"`
}

// Save writes the changes as JSON, for Restore.
func (r *Runtime) Save(w io.Writer) error {
	return SaveChanges(w, r.Changes())
}

// SaveChanges writes changes as Save does; OnChange functions use it.
func SaveChanges(w io.Writer, changes []Change) error {
	if changes == nil {
		changes = []Change{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(savedState{Version: 1, Changes: changes})
}

// Restore reads changes written by Save and makes them, replacing the ones
// held; as with Reapply, those that cannot be made are dropped and
// returned.
func (r *Runtime) Restore(rd io.Reader) ([]DroppedChange, error) {
	var st savedState
	dec := json.NewDecoder(rd)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("admin: runtime state: %w", err)
	}
	if st.Version != 1 {
		return nil, fmt.Errorf("admin: runtime state: version %d, want 1", st.Version)
	}
	for _, c := range st.Changes {
		if c.Group == "" || c.Target == "" {
			return nil, errors.New("admin: runtime state: a change without a group or target")
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.applyLocked(st.Changes), nil
}
