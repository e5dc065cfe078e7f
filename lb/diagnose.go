package lb

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lbkit/lbkit/healthcheck"
	"github.com/lbkit/lbkit/internal/acceptloop"
	"github.com/lbkit/lbkit/proxy"
)

// Query narrows a diagnosis to a client's point of view: which listener it
// reaches on Port, and whether that listener's access control lets it in.
// The zero Query asks about everything.
type Query struct {
	// Client is the client's IP address; zero for any client.
	Client netip.Addr `json:"client"`
	// Port is the port the client connects to; 0 for every listener.
	Port int `json:"port"`
}

// Diagnosis says, for every listener, target group and target, whether it
// can receive traffic and, if not, every reason, in words (Reasons) and as
// data (the other fields). It answers the reference troubleshooting
// questions from one call: is there a listener on that port; is the client
// allowed by its access control; is the target group attached; is any target
// healthy and if not why (refused, timeout, wrong status, ICMP unreachable);
// is the weight 0; is the target draining or ejected; is the flow table
// full. String renders it for people.
type Diagnosis struct {
	// Time is when the diagnosis was made.
	Time time.Time `json:"time,omitzero"`
	// Query is what was asked.
	Query Query `json:"query"`
	// OK is true when every listener asked about can forward traffic to at
	// least one target and nothing else is wrong.
	OK bool `json:"ok"`
	// Problems lists what stands in the way, in words, most important
	// first; empty when OK.
	Problems []string `json:"problems"`
	// Flows describes the flow table.
	Flows FlowDiagnosis `json:"flows"`
	// Listeners and Groups are sorted by name.
	Listeners []ListenerDiagnosis `json:"listeners"`
	Groups    []GroupDiagnosis    `json:"groups"`
}

// FlowDiagnosis describes the flow table and the descriptor budget: the
// limits that refuse new connections and flows.
type FlowDiagnosis struct {
	// Active and Max are the flows held and the capacity.
	Active int `json:"active"`
	Max    int `json:"max"`
	// Full is true when no new flow fits (and none is unreplied, to be
	// evicted to make room).
	Full bool `json:"full"`
	// Rejected counts flows refused because the table was full;
	// RejectedSource because their source was at its limit, MaxPerSource
	// (0: no cap).
	Rejected       uint64 `json:"rejected"`
	RejectedSource uint64 `json:"rejected_source"`
	MaxPerSource   int    `json:"max_per_source"`
	// Unreplied is the UDP flows held now that their target has not
	// answered (see WithUnrepliedTimeout); Evicted counts those evicted to
	// make room for new flows, in the table or in the budget.
	Unreplied int    `json:"unreplied"`
	Evicted   uint64 `json:"evicted"`
	// Descriptors describes the descriptor budget; DescriptorsFull is true
	// when a new TCP connection would not fit in it.
	Descriptors     DescriptorStats `json:"descriptors"`
	DescriptorsFull bool            `json:"descriptors_full"`
	// Limits says, for each limit that has refused clients (table
	// capacity, per-source cap, descriptor budget) or made room by
	// evicting, what it refused, with the numbers.
	Limits []string `json:"limits"`
}

// ListenerDiagnosis describes one listener.
type ListenerDiagnosis struct {
	Name     string   `json:"name"`
	Protocol Protocol `json:"protocol"`
	// Addr is the address the listener is bound to.
	Addr string `json:"address"`
	// Groups are the target groups it forwards to (its default action and
	// its rules).
	Groups []string `json:"groups"`
	// ACL describes its access control.
	ACL string `json:"acl"`
	// ClientAllowed is false when Query.Client is set and the access
	// control refuses it.
	ClientAllowed bool `json:"client_allowed"`
	// AcceptFailingSince is when the listener's socket began failing to
	// accept (out of descriptors and the like), zero while it accepts;
	// AcceptError says why, in the system's words ("too many open files"),
	// and AcceptErrors counts every failed accept since the listener
	// started. Failed accepts are retried with a back-off and accepting
	// resumes by itself.
	AcceptFailingSince time.Time `json:"accept_failing_since,omitzero"`
	AcceptError        string    `json:"accept_error"`
	AcceptErrors       uint64    `json:"accept_errors"`
	// Certificates describes the certificates a TLS or HTTPS listener
	// serves: its own and its source's (WithCertificatesFrom), with when each
	// expires and why renewing it fails, if it does.
	Certificates []CertificateStatus `json:"certificates,omitempty"`
	// OK is true when it can forward new traffic to a target.
	OK bool `json:"ok"`
	// Reasons says why not (and notes worth knowing).
	Reasons []string `json:"reasons"`
}

// GroupDiagnosis describes one target group.
type GroupDiagnosis struct {
	Name      string   `json:"name"`
	Protocol  Protocol `json:"protocol"`
	Algorithm string   `json:"algorithm"`
	// Listeners are the listeners that forward to it.
	Listeners []string `json:"listeners"`
	// HealthCheck describes its health check.
	HealthCheck string `json:"health_check"`
	// Discovery describes its discovery source and its last answer.
	Discovery string `json:"discovery"`
	// OK is true when at least one target can receive new traffic.
	OK bool `json:"ok"`
	// Reasons says why not (and notes worth knowing).
	Reasons []string          `json:"reasons"`
	Targets []TargetDiagnosis `json:"targets"`
}

// TargetDiagnosis describes one target.
type TargetDiagnosis struct {
	ID     string `json:"id"`
	Addr   string `json:"address"`
	Weight int    `json:"weight"`
	// Zone and Priority are what discovery said of the target (see
	// Discovered); empty and 0 for static targets.
	Zone     string `json:"zone"`
	Priority int    `json:"priority"`
	// OK is true when the target receives new traffic.
	OK bool `json:"ok"`
	// Reasons says why not, in words, each starting with what it is
	// about: "unhealthy: connection refused (3 consecutive failed checks);
	// last checks: …", "weight 0: no new traffic; …", "deregistered,
	// draining until 15:04:05: …", "ejected by passive checks until
	// 15:04:05: 2 consecutive failures, last: connection reset by peer".
	Reasons []string `json:"reasons"`
	// Health is the target's health-check status: state, reason, the
	// counts toward the thresholds, the last results and the next check.
	Health healthcheck.Status `json:"health"`
	// DrainUntil is when its deregistration delay ends, if draining.
	DrainUntil time.Time `json:"drain_until,omitzero"`
	// Drained and HealthCheckOff are what an operator set (see
	// LoadBalancer.DrainTarget and SetTargetHealthCheck).
	Drained        bool `json:"drained"`
	HealthCheckOff bool `json:"health_check_off"`
	// ActiveConnections and ActiveRequests are its open connections (L4)
	// and requests in flight (L7).
	ActiveConnections int64 `json:"active_connections"`
	ActiveRequests    int64 `json:"active_requests"`
}

// Diagnose explains whether traffic can reach each target and, if not,
// why. With a Query it also says whether a client reaches a listener on a
// port and whether the listener's access control admits it.
func (l *LoadBalancer) Diagnose(q Query) Diagnosis {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := Diagnosis{Time: time.Now(), Query: q}
	if !l.started || l.stopped {
		d.Problems = append(d.Problems, "the load balancer is not running")
		return d
	}

	d.Flows = l.diagnoseFlows()
	if d.Flows.Full {
		d.Problems = append(d.Problems, fmt.Sprintf("the flow table is full (%d of %d flows): new TCP connections and UDP flows are refused (%d so far)", d.Flows.Active, d.Flows.Max, d.Flows.Rejected))
	}
	if ds := d.Flows.Descriptors; d.Flows.DescriptorsFull {
		d.Problems = append(d.Problems, fmt.Sprintf("the descriptor budget is spent (%d of %d descriptors held by clients; %s): new connections and flows are refused (%d so far)",
			ds.InUse, ds.Limit, describeBudget(ds), ds.Refused))
	}

	attached := map[string][]string{}
	groups := map[string]GroupDiagnosis{}
	for _, g := range l.groups {
		groups[g.name] = g.diagnose()
	}
	matched := false
	for _, li := range l.listeners {
		ld := l.diagnoseListener(li, q, groups)
		for _, g := range ld.Groups {
			attached[g] = append(attached[g], ld.Name)
		}
		if q.Port != 0 && portOf(li.addr) != q.Port {
			continue
		}
		matched = true
		if !ld.OK {
			for _, r := range ld.Reasons {
				d.Problems = append(d.Problems, fmt.Sprintf("listener %q: %s", ld.Name, r))
			}
		}
		d.Listeners = append(d.Listeners, ld)
	}
	if q.Port != 0 && !matched {
		var ports []string
		for _, li := range l.listeners {
			ports = append(ports, fmt.Sprintf("%s %s", li.cfg.name, li.addr))
		}
		slices.Sort(ports)
		d.Problems = append([]string{fmt.Sprintf("no listener on port %d (listeners: %s)", q.Port, strings.Join(ports, ", "))}, d.Problems...)
	}
	for name, gd := range groups {
		gd.Listeners = attached[name]
		slices.Sort(gd.Listeners)
		if len(gd.Listeners) == 0 {
			gd.Reasons = append(gd.Reasons, "not attached to any listener: no traffic is forwarded to it")
		}
		if q.Port == 0 || len(gd.Listeners) > 0 && slices.ContainsFunc(d.Listeners, func(ld ListenerDiagnosis) bool { return slices.Contains(ld.Groups, name) }) {
			d.Groups = append(d.Groups, gd)
		}
	}
	slices.SortFunc(d.Listeners, func(a, b ListenerDiagnosis) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(d.Groups, func(a, b GroupDiagnosis) int { return cmp.Compare(a.Name, b.Name) })
	d.OK = len(d.Problems) == 0
	return d
}

// diagnoseFlows describes the flow table and the descriptor budget; l.mu is
// held.
func (l *LoadBalancer) diagnoseFlows() FlowDiagnosis {
	fs := l.flows.Stats()
	f := FlowDiagnosis{
		Active: int(fs.Total.ActiveFlowCount), Max: fs.MaxFlows,
		Rejected: fs.Total.RejectedFlowCount, RejectedSource: fs.Total.RejectedSourceFlowCount,
		MaxPerSource: fs.MaxFlowsPerSource, Unreplied: fs.Unreplied, Evicted: fs.Total.EvictedFlowCount,
		Descriptors: l.descriptorStats(),
	}
	f.Full = f.Active >= f.Max && f.Unreplied == 0
	ds := f.Descriptors
	f.DescriptorsFull = ds.Limit > 0 && ds.InUse+proxy.TCPDescriptors > int64(ds.Limit) && f.Unreplied == 0
	if f.Rejected > 0 {
		f.Limits = append(f.Limits, fmt.Sprintf("table capacity: %d new flows refused, the table holding %d flows (%d now)", f.Rejected, f.Max, f.Active))
	}
	if f.RejectedSource > 0 {
		f.Limits = append(f.Limits, fmt.Sprintf("per-source cap: %d new flows refused from client addresses holding %d flows each", f.RejectedSource, f.MaxPerSource))
	}
	if ds.Refused > 0 {
		f.Limits = append(f.Limits, fmt.Sprintf("descriptor budget: %d new connections and flows refused, the budget being %d descriptors (%s; %d held now)", ds.Refused, ds.Limit, describeBudget(ds), ds.InUse))
	}
	if f.Evicted > 0 {
		f.Limits = append(f.Limits, fmt.Sprintf("%d unreplied UDP flows evicted to make room for new flows (%d of them for the descriptor budget); %d unreplied now", f.Evicted, ds.Evicted, f.Unreplied))
	}
	return f
}

// describeBudget says where a descriptor budget comes from.
func describeBudget(ds DescriptorStats) string {
	if ds.Reserve > 0 {
		return fmt.Sprintf("the process limit %d minus a reserve of %d", ds.ProcessLimit, ds.Reserve)
	}
	if ds.ProcessLimit > 0 {
		return fmt.Sprintf("set by WithDescriptorBudget; the process limit is %d", ds.ProcessLimit)
	}
	return "set by WithDescriptorBudget"
}

// diagnoseListener describes a listener, whose groups are described in groups.
func (l *LoadBalancer) diagnoseListener(li *listener, q Query, groups map[string]GroupDiagnosis) ListenerDiagnosis {
	cfg := li.cfg
	ld := ListenerDiagnosis{Name: cfg.name, Protocol: cfg.proto, Addr: li.addr.String(), ClientAllowed: true}
	acl, _ := proxy.ParseACL(cfg.allow, cfg.deny)
	if len(cfg.allow) == 0 && len(cfg.deny) == 0 {
		acl = nil
	}
	ld.ACL = acl.String()
	if err := li.failed.Load(); err != nil {
		ld.Reasons = append(ld.Reasons, fmt.Sprintf("not serving: %v; its socket is closed (a reload binds it again)", *err))
	}
	accepting := true
	if li.sock != nil {
		as := li.sock.acceptStats()
		ld.AcceptErrors = as.Errors
		if !as.FailingSince.IsZero() {
			accepting = false
			ld.AcceptFailingSince, ld.AcceptError = as.FailingSince, acceptloop.Describe(as.LastError)
			ld.Reasons = append(ld.Reasons, fmt.Sprintf("cannot accept: %s, since %s (%d failed accepts so far; retrying with back-off)",
				ld.AcceptError, as.FailingSince.Format(time.TimeOnly), as.Errors))
		}
	}
	if q.Client.IsValid() && !acl.Allows(q.Client) {
		ld.ClientAllowed = false
		ld.Reasons = append(ld.Reasons, fmt.Sprintf("client %s is denied by the access control (%s)", q.Client, ld.ACL))
	}
	names := map[string]bool{}
	if cfg.group != "" && cfg.defRedirect == nil && cfg.defFixed == nil {
		names[cfg.group] = true
	}
	for _, r := range cfg.rules {
		if r.Forward != "" {
			names[r.Forward] = true
		}
		for _, s := range r.Split {
			names[s.Group] = true
		}
	}
	ld.Groups = slices.Sorted(maps.Keys(names))
	anyOK := len(ld.Groups) == 0 // redirects and fixed responses need no target
	for _, name := range ld.Groups {
		gd := groups[name]
		if gd.OK {
			anyOK = true
			continue
		}
		ld.Reasons = append(ld.Reasons, fmt.Sprintf("target group %q has no target that can receive traffic", name))
	}
	if cfg.proto == UDP {
		if a, ok := li.addr.(*net.UDPAddr); ok && a.IP.IsUnspecified() {
			ld.Reasons = append(ld.Reasons, "note: bound to an unspecified address; replies leave from the address the kernel chooses, which clients may not accept")
		}
	}
	var certReasons []string
	ld.Certificates, certReasons = certificateStatus(cfg, time.Now())
	ld.Reasons = append(ld.Reasons, certReasons...)
	ld.OK = anyOK && ld.ClientAllowed && li.failed.Load() == nil && accepting
	return ld
}

// diagnose describes the group.
func (g *group) diagnose() GroupDiagnosis {
	statuses := map[string]healthcheck.Status{}
	for _, s := range g.mon().Statuses() {
		statuses[s.Target.ID] = s
	}
	counters := map[string]proxy.TargetStats{}
	for _, t := range g.up().Stats().Targets {
		counters[t.ID] = t
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	gd := GroupDiagnosis{Name: g.name, Protocol: g.cfg.proto, Algorithm: g.cfg.algo.String(), HealthCheck: g.cfg.describeHealth()}
	if d := g.disco; d != nil {
		gd.Discovery = describeDiscovery(d, g.lastDisc)
		if d.lastErr != nil {
			gd.Reasons = append(gd.Reasons, fmt.Sprintf("discovery from %s failing since %s: %v (serving the last good answer: %d targets)", d.src, d.lastErrAt.Format(time.TimeOnly), d.lastErr, len(g.lastDisc)))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(g.members)) {
		m := g.members[id]
		td := TargetDiagnosis{ID: id, Addr: m.t.addr, Weight: m.t.weight, Zone: m.t.zone, Priority: m.t.priority, Health: statuses[id],
			DrainUntil: m.drainUntil, Drained: m.drained, HealthCheckOff: m.checksOff}
		c := counters[id]
		td.ActiveConnections, td.ActiveRequests = c.ActiveConnections, c.ActiveRequests
		st := statuses[id]
		if m.cond.State != healthcheck.Healthy {
			td.Reasons = append(td.Reasons, "unhealthy: "+describeUnhealthy(st, g.cfg))
		}
		if m.cond.Ejected {
			td.Reasons = append(td.Reasons, fmt.Sprintf("ejected by passive checks until %s: %s", st.EjectedUntil.Format(time.TimeOnly), st.EjectionReason))
		} else if st.EjectionReason != "" {
			td.Reasons = append(td.Reasons, "note: "+st.EjectionReason)
		}
		if m.checksOff {
			td.Reasons = append(td.Reasons, "note: health checks turned off by an operator; treated as healthy")
		}
		if m.t.weight == 0 {
			td.Reasons = append(td.Reasons, "weight 0: no new traffic; established connections continue")
		}
		if m.drained {
			td.Reasons = append(td.Reasons, fmt.Sprintf("drained by an operator: no new traffic; connections open when it was drained are closed at %s", m.drainCut.Format(time.TimeOnly)))
		}
		if !m.drainUntil.IsZero() {
			td.Reasons = append(td.Reasons, fmt.Sprintf("deregistered, draining until %s: no new traffic; established connections and sticky sessions continue until then", m.drainUntil.Format(time.TimeOnly)))
		}
		if m.t.priority != g.prio && m.drainUntil.IsZero() {
			td.Reasons = append(td.Reasons, fmt.Sprintf("standby: priority %d; new traffic goes to priority %d, which has a serving target", m.t.priority, g.prio))
		}
		td.OK = m.cond.Serving() && m.t.weight > 0 && !m.drained && m.drainUntil.IsZero() && m.t.priority == g.prio
		if td.OK {
			gd.OK = true
		}
		gd.Targets = append(gd.Targets, td)
	}
	if len(gd.Targets) == 0 {
		gd.Reasons = append(gd.Reasons, "no targets registered")
	} else if !gd.OK {
		gd.Reasons = append(gd.Reasons, "no target can receive traffic: new connections are refused (503 at L7)")
	}
	return gd
}

// describeDiscovery says what a group's source is and what it last said,
// e.g. "kubernetes default/web port http (watch): 12 targets, 2 draining,
// last change 10:41:07". g.mu is held.
func describeDiscovery(d *discovery, last []Discovered) string {
	var b strings.Builder
	b.WriteString(d.src.String())
	if d.watch {
		b.WriteString(" (watch)")
	}
	draining := 0
	for _, t := range last {
		if t.State == Draining {
			draining++
		}
	}
	fmt.Fprintf(&b, ": %d targets", len(last))
	if draining > 0 {
		fmt.Fprintf(&b, ", %d draining", draining)
	}
	switch {
	case d.lastErr != nil && d.watch:
		fmt.Fprintf(&b, "; watch disconnected since %s, serving the last %d targets", d.lastErrAt.Format(time.TimeOnly), len(last))
	case d.lastErr != nil:
		fmt.Fprintf(&b, "; failing since %s, serving the last %d targets", d.lastErrAt.Format(time.TimeOnly), len(last))
	case d.lastOK.IsZero():
		b.WriteString("; no answer yet")
	case d.watch:
		fmt.Fprintf(&b, ", last change %s", d.lastOK.Format(time.TimeOnly))
	default:
		fmt.Fprintf(&b, ", last answer %s", d.lastOK.Format(time.TimeOnly))
	}
	return b.String()
}

// describeUnhealthy says why a target is unhealthy: the last failure's
// reason with the count toward the threshold and the recent results.
func describeUnhealthy(st healthcheck.Status, cfg *groupConfig) string {
	var b strings.Builder
	b.WriteString(cmp.Or(st.Reason, "not checked yet"))
	if st.Failures > 0 {
		fmt.Fprintf(&b, " (%d consecutive failed checks)", st.Failures)
	}
	if st.Successes > 0 {
		fmt.Fprintf(&b, " (%d of %d successes needed)", st.Successes, cmpOr(cfg.health.HealthyThreshold, healthcheck.DefaultHealthyThreshold))
	}
	var recent []string
	for _, r := range st.Results[max(0, len(st.Results)-3):] {
		res := "ok"
		if !r.OK {
			res = r.Reason
		}
		recent = append(recent, fmt.Sprintf("%s %s", r.Time.Format(time.TimeOnly), res))
	}
	if len(recent) > 0 {
		fmt.Fprintf(&b, "; last checks: %s", strings.Join(recent, ", "))
	}
	return b.String()
}

// describeHealth describes a group's health check in words.
func (g *groupConfig) describeHealth() string {
	if g.noHealth {
		return "off: every target counts as healthy"
	}
	h := g.health
	p := g.healthProtocol()
	var b strings.Builder
	b.WriteString(p.String())
	if p.l7() {
		fmt.Fprintf(&b, " %s %s, status %s", cmp.Or(h.Method, "GET"), cmp.Or(h.Path, "/"), cmp.Or(h.Status, "200"))
		if h.Host != "" {
			fmt.Fprintf(&b, ", host %s", h.Host)
		}
	}
	if h.Port != 0 {
		fmt.Fprintf(&b, " on port %d", h.Port)
	} else {
		b.WriteString(" on the traffic port")
	}
	fmt.Fprintf(&b, ", every %s, timeout %s, healthy after %d, unhealthy after %d",
		orDuration(h.Interval, healthcheck.DefaultInterval), orDuration(h.Timeout, healthcheck.DefaultTimeout),
		cmpOr(h.HealthyThreshold, healthcheck.DefaultHealthyThreshold), cmpOr(h.UnhealthyThreshold, healthcheck.DefaultUnhealthyThreshold))
	return b.String()
}

// String renders the diagnosis for people.
func (d Diagnosis) String() string {
	var b strings.Builder
	if d.OK {
		b.WriteString("OK: traffic can reach targets\n")
	} else {
		b.WriteString("PROBLEMS:\n")
		for _, p := range d.Problems {
			fmt.Fprintf(&b, "  - %s\n", p)
		}
	}
	fmt.Fprintf(&b, "flow table: %d of %d flows, %d refused (full), %d refused (source limit)\n", d.Flows.Active, d.Flows.Max, d.Flows.Rejected, d.Flows.RejectedSource)
	if ds := d.Flows.Descriptors; ds.Limit > 0 {
		fmt.Fprintf(&b, "descriptor budget: %d of %d in use (%s), %d refused\n", ds.InUse, ds.Limit, describeBudget(ds), ds.Refused)
	}
	for _, s := range d.Flows.Limits {
		fmt.Fprintf(&b, "  - %s\n", s)
	}
	for _, l := range d.Listeners {
		fmt.Fprintf(&b, "listener %s (%s %s) → %s: %s\n", l.Name, l.Protocol, l.Addr, strings.Join(l.Groups, ", "), okWord(l.OK))
		fmt.Fprintf(&b, "  access control: %s\n", l.ACL)
		for _, c := range l.Certificates {
			if c.Source == "static" {
				continue // the operator's files: their expiry is in the data
			}
			if c.NotAfter.IsZero() {
				fmt.Fprintf(&b, "  certificate %s (%s): none yet\n", strings.Join(c.Names, ", "), c.Source)
				continue
			}
			fmt.Fprintf(&b, "  certificate %s (%s): expires %s, renewal due %s\n", strings.Join(c.Names, ", "), c.Source,
				c.NotAfter.UTC().Format(time.RFC3339), c.RenewAfter.UTC().Format(time.RFC3339))
		}
		for _, r := range l.Reasons {
			fmt.Fprintf(&b, "  - %s\n", r)
		}
	}
	for _, g := range d.Groups {
		fmt.Fprintf(&b, "target group %s (%s, %s): %s\n", g.Name, g.Protocol, g.Algorithm, okWord(g.OK))
		fmt.Fprintf(&b, "  health check: %s\n", g.HealthCheck)
		if g.Discovery != "" {
			fmt.Fprintf(&b, "  discovery: %s\n", g.Discovery)
		}
		for _, r := range g.Reasons {
			fmt.Fprintf(&b, "  - %s\n", r)
		}
		for _, t := range g.Targets {
			fmt.Fprintf(&b, "  target %s (%s, weight %d%s): %s\n", t.ID, t.Addr, t.Weight, placeOf(t), okWord(t.OK))
			for _, r := range t.Reasons {
				fmt.Fprintf(&b, "    - %s\n", r)
			}
		}
	}
	return b.String()
}

// placeOf returns a discovered target's zone and priority for the
// rendering, e.g. ", zone eu-1a, priority 1", or "" for neither.
func placeOf(t TargetDiagnosis) string {
	var s string
	if t.Zone != "" {
		s += ", zone " + t.Zone
	}
	if t.Priority != 0 {
		s += ", priority " + strconv.Itoa(t.Priority)
	}
	return s
}

func okWord(ok bool) string {
	if ok {
		return "receiving traffic"
	}
	return "NOT receiving traffic"
}

func portOf(a net.Addr) int {
	_, p, err := net.SplitHostPort(a.String())
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// Listener returns the diagnosis of the listener called name, and whether
// there is one.
func (d Diagnosis) Listener(name string) (ListenerDiagnosis, bool) {
	return find(d.Listeners, func(l ListenerDiagnosis) bool { return l.Name == name })
}

// Group returns the diagnosis of the target group called name, and whether
// there is one.
func (d Diagnosis) Group(name string) (GroupDiagnosis, bool) {
	return find(d.Groups, func(g GroupDiagnosis) bool { return g.Name == name })
}

// Target returns the diagnosis of the group's target id, and whether there
// is one.
func (g GroupDiagnosis) Target(id string) (TargetDiagnosis, bool) {
	return find(g.Targets, func(t TargetDiagnosis) bool { return t.ID == id })
}
