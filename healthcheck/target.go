package healthcheck

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// Target is one destination to check: its identity and the address of its
// traffic port. Checkers may probe another port of the same host (see the
// Port field of each checker).
//
// healthcheck keeps its own small Target rather than importing the balancer's,
// so the two packages stay independent; the lb package maps one onto the
// other by ID.
type Target struct {
	// ID names the target uniquely within a Monitor; state changes and
	// statuses are reported by it.
	ID string `json:"id"`
	// Addr is the traffic port as "host:port" (IPv6 hosts in brackets). The
	// host may be a name; checkers resolve it at every check.
	Addr string `json:"address"`
}

// State is the health of a target as decided by active checks.
//
// The zero value is Unhealthy, so a target nobody has vouched for receives
// no traffic. balancer.Health's zero value is the opposite (Healthy), so
// never convert one into the other by number: a balancer's mark is
// balancer.HealthOf(condition.Serving()), which also counts ejection.
type State uint8

const (
	// Unhealthy targets should receive no new traffic.
	Unhealthy State = iota
	// Healthy targets may receive new traffic (unless ejected, see
	// Condition).
	Healthy
)

// String returns "healthy" or "unhealthy".
func (s State) String() string {
	switch s {
	case Healthy:
		return "healthy"
	case Unhealthy:
		return "unhealthy"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText implements encoding.TextMarshaler: "healthy" or "unhealthy".
func (s State) MarshalText() ([]byte, error) {
	if s > Healthy {
		return nil, fmt.Errorf("healthcheck: state %d is unknown", s)
	}
	return []byte(s.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *State) UnmarshalText(b []byte) error {
	switch string(b) {
	case "healthy":
		*s = Healthy
	case "unhealthy":
		*s = Unhealthy
	default:
		return fmt.Errorf("healthcheck: state %q is not healthy or unhealthy", b)
	}
	return nil
}

// Condition is everything that decides whether a target gets new traffic:
// its health from active checks and its ejection from passive signals. The
// two are kept apart because they answer different questions ("does the
// health endpoint answer?" and "do real requests succeed?") and end
// differently (checks vs. a fixed ejection period).
type Condition struct {
	// State is the health decided by active checks.
	State State `json:"state"`
	// Ejected reports that passive signals (failures reported by the
	// caller) have ejected the target for a while.
	Ejected bool `json:"ejected"`
}

// Serving reports whether the target should receive new traffic: healthy and
// not ejected.
func (c Condition) Serving() bool { return c.State == Healthy && !c.Ejected }

// String returns the state, followed by ", ejected" when ejected.
func (c Condition) String() string {
	if c.Ejected {
		return c.State.String() + ", ejected"
	}
	return c.State.String()
}

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
			errs = append(errs, fmt.Errorf("healthcheck: %s: %w", name, err))
		}
		if t.ID == "" {
			continue
		}
		if j, dup := seen[t.ID]; dup {
			errs = append(errs, fmt.Errorf("healthcheck: %s: %w: id also used by target[%d]", name, ErrDuplicateTarget, j))
			continue
		}
		seen[t.ID] = i
	}
	return errors.Join(errs...)
}

// problems lists what is wrong with the target's fields.
func (t *Target) problems() []error {
	var errs []error
	if t.ID == "" {
		errs = append(errs, fmt.Errorf("%w: id is empty", ErrInvalidTarget))
	}
	if t.Addr == "" {
		return append(errs, fmt.Errorf("%w: addr is empty", ErrInvalidTarget))
	}
	host, port, err := net.SplitHostPort(t.Addr)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("%w: addr %q is not host:port", ErrInvalidTarget, t.Addr))
	case host == "":
		errs = append(errs, fmt.Errorf("%w: addr %q has no host", ErrInvalidTarget, t.Addr))
	default:
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			errs = append(errs, fmt.Errorf("%w: addr %q has port %q, want 1..65535", ErrInvalidTarget, t.Addr, port))
		}
	}
	return errs
}

// checkAddr returns the "host:port" a checker probes: the target's traffic
// port, or port when it is not 0. The target's address is checked here too,
// because checkers are also used alone, without a Monitor validating
// targets.
func checkAddr(t Target, port int) (host string, addr string, err error) {
	host, _, err = net.SplitHostPort(t.Addr)
	if err != nil || host == "" {
		return "", "", &CheckError{Reason: fmt.Sprintf("invalid target address %q", t.Addr), Err: ErrInvalidTarget}
	}
	switch {
	case port < 0 || port > 65535:
		return "", "", &CheckError{Reason: fmt.Sprintf("invalid health-check port %d, want 0..65535", port), Err: ErrInvalidOption}
	case port == 0:
		return host, t.Addr, nil
	}
	return host, net.JoinHostPort(host, strconv.Itoa(port)), nil
}
