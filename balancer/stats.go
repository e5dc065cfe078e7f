package balancer

// Stats is a snapshot of a Balancer's state and counters, cheap to take.
type Stats struct {
	// Algorithm is the current picking algorithm.
	Algorithm Algorithm
	// Targets lists every target with its live counters, sorted by ID.
	Targets []TargetStats
	// Healthy and Unhealthy count targets by health mark, whatever their
	// weight.
	Healthy, Unhealthy int
	// Eligible counts targets that can be picked: Healthy with weight > 0.
	Eligible int
	// NoTarget counts picks refused with ErrNoTarget since the balancer was
	// made.
	NoTarget uint64
}

// TargetStats is one target and its live counters.
type TargetStats struct {
	Target
	// Active is the number of LeastConnections picks of this target not yet
	// released with Done: its open connections or requests while the
	// algorithm is LeastConnections. Other algorithms keep no count.
	Active int64
}

// Stats returns a snapshot of the balancer's targets and counters. It reads
// the current picking snapshot and takes no lock.
func (b *Balancer) Stats() Stats {
	st := Stats{NoTarget: b.noTarget.Load()}
	s := b.snap.Load()
	if s == nil {
		return st
	}
	st.Algorithm = s.algo
	st.Eligible = len(s.elig)
	st.Targets = make([]TargetStats, len(s.targets))
	for i := range s.targets {
		e := &s.targets[i]
		st.Targets[i] = TargetStats{Target: e.t, Active: e.ep.active.Load()}
		if e.t.Health == Healthy {
			st.Healthy++
		} else {
			st.Unhealthy++
		}
	}
	return st
}
