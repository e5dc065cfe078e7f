package lb

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// waitPoll is how often the Wait methods look again.
const waitPoll = 10 * time.Millisecond

// WaitServing waits until a target can receive new traffic: target id of
// the group, or any target of it when id is "". It returns nil at once if
// one can, and ctx's error, wrapped with what Diagnose says of the group
// or target, if ctx ends first. It is for programs and tests that start a
// load balancer and must not send traffic before a target passed its first
// health check.
func (l *LoadBalancer) WaitServing(ctx context.Context, group, id string) error {
	return l.wait(ctx, func() (bool, string) {
		g, ok := l.Diagnose(Query{}).Group(group)
		switch {
		case !ok:
			return false, fmt.Sprintf("no target group %s", group)
		case id == "":
			return g.OK, describeGroupWait(g)
		}
		t, ok := g.Target(id)
		if !ok {
			return false, fmt.Sprintf("group %s has no target %s", group, id)
		}
		return t.OK, fmt.Sprintf("target %s of group %s: %s", id, group, strings.Join(t.Reasons, "; "))
	})
}

// WaitChecked waits until every target of every group has had its first
// health check, whatever its result (targets of groups without checks, and
// targets whose checks are turned off, count as checked), and every
// discovery source has answered or failed once. A program that
// takes over from another one (a binary upgrade) calls it before it says it
// is ready, so that it does not start with every target still unhealthy.
// It returns ctx's error, wrapped with the targets not checked yet, if ctx
// ends first.
func (l *LoadBalancer) WaitChecked(ctx context.Context) error {
	return l.wait(ctx, func() (bool, string) {
		waiting := l.unchecked()
		return len(waiting) == 0, "targets not checked yet: " + strings.Join(waiting, ", ")
	})
}

// unchecked returns the targets ("group/id") still waiting for their first
// health check.
func (l *LoadBalancer) unchecked() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, name := range slices.Sorted(maps.Keys(l.groups)) {
		g := l.groups[name]
		mon := g.mon()
		g.mu.Lock()
		if d := g.disco; d != nil && d.answers == 0 && d.lastErr == nil {
			out = append(out, name+" (discovery: no answer yet)")
		}
		if !g.cfg.noHealth {
			for _, id := range slices.Sorted(maps.Keys(g.members)) {
				if g.members[id].checksOff {
					continue
				}
				if st, ok := mon.Status(id); ok && len(st.Results) == 0 {
					out = append(out, name+"/"+id)
				}
			}
		}
		g.mu.Unlock()
	}
	return out
}

// wait polls done until it reports true or ctx ends; done also says what
// it is waiting for.
func (l *LoadBalancer) wait(ctx context.Context, done func() (bool, string)) error {
	t := time.NewTicker(waitPoll)
	defer t.Stop()
	for {
		ok, why := done()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lb: %w: %s", ctx.Err(), why)
		case <-t.C:
		}
	}
}

// describeGroupWait says why no target of g can receive traffic.
func describeGroupWait(g GroupDiagnosis) string {
	var b strings.Builder
	fmt.Fprintf(&b, "group %s:", g.Name)
	if len(g.Targets) == 0 {
		b.WriteString(" no targets")
	}
	for _, t := range g.Targets {
		fmt.Fprintf(&b, " target %s: %s;", t.ID, strings.Join(t.Reasons, "; "))
	}
	return strings.TrimSuffix(b.String(), ";")
}
