package admin

import (
	"cmp"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lbkit/lbkit/healthcheck"
	"github.com/lbkit/lbkit/lb"
)

//go:embed status.html
var files embed.FS

// page is the status page's template, parsed once: it is immutable, and
// parsing it cannot fail at run time (a test renders it).
var page = template.Must(template.New("status.html").Funcs(template.FuncMap{
	"clock": func(t time.Time) string { return t.Format(time.TimeOnly) },
	"join":  func(ss []string) string { return strings.Join(ss, ", ") },
}).ParseFS(files, "status.html"))

// statusData is what the status page shows.
type statusData struct {
	Title     string
	Time      time.Time
	Refresh   int
	Metrics   bool
	Level     string // "ok", "warn" or "bad": the summary's colour
	Headline  string // the summary in one line
	Summary   []summaryLine
	Diagnosis lb.Diagnosis
	Groups    []groupView
	// Runtime says the runtime API can change things; Changes are the
	// changes made, OnReload what a reload does to them.
	Runtime  bool
	Changes  []Change
	OnReload string
}

// summaryLine is one line of the summary at the top of the page.
type summaryLine struct {
	Level, Text string
}

type groupView struct {
	lb.GroupDiagnosis
	Level    string // "ok", "warn", "bad"
	Healthy  int    // targets that receive traffic
	Draining int
	Targets  []targetView
}

// targetView is one row of a group's target table.
type targetView struct {
	lb.TargetDiagnosis
	Health   string // "healthy", "unhealthy"
	Reason   string // the health checks' last word
	State    string // "serving", "draining until 15:04:05", "ejected", "weight 0", ...
	Level    string // "ok", "warn" (draining, weight 0: deliberate), "bad" (a failure)
	Requests uint64
	Recent   string // the last checks, oldest first
}

// defaultRefresh is how often the page reloads itself unless ?refresh=
// says otherwise (0 turns it off).
const defaultRefresh = 5

// status renders the status page: a summary that puts trouble first, then
// the listeners, then the target groups, those with a problem first.
func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	d := h.lb.Diagnose(lb.Query{})
	st := h.lb.Stats()
	requests := map[[2]string]uint64{}
	for _, g := range st.Groups {
		for _, t := range g.Targets {
			requests[[2]string{g.Name, t.ID}] = t.Counters.Requests
		}
	}
	data := statusData{Title: h.cfg.title, Time: d.Time, Diagnosis: d, Refresh: defaultRefresh, Metrics: h.cfg.metrics != nil}
	if rt := h.cfg.runtime; rt != nil {
		data.Runtime, data.Changes, data.OnReload = true, rt.Changes(), OnReloadText
	}
	if v := r.URL.Query().Get("refresh"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			data.Refresh = min(n, 3600)
		}
	}
	for _, g := range d.Groups {
		gv := groupView{GroupDiagnosis: g}
		for _, t := range g.Targets {
			tv := targetView{
				TargetDiagnosis: t,
				Health:          healthWord(t.Health),
				Reason:          cmp.Or(t.Health.Reason, "not checked yet"),
				State:           state(t),
				Level:           targetLevel(t),
				Requests:        requests[[2]string{g.Name, t.ID}],
				Recent:          recent(t.Health.Results),
			}
			switch {
			case t.OK:
				gv.Healthy++
			case tv.Level == "warn":
				gv.Draining++
			}
			gv.Targets = append(gv.Targets, tv)
		}
		// Trouble first within the group too: failing targets, then
		// deliberately paused ones, then the rest, each by ID.
		slices.SortStableFunc(gv.Targets, func(a, b targetView) int { return cmp.Compare(levelRank(a.Level), levelRank(b.Level)) })
		switch {
		case !g.OK:
			gv.Level = "bad"
		case gv.Healthy+gv.Draining < len(g.Targets) || len(g.Reasons) > 0:
			gv.Level = "warn" // degraded: some target failing
		case gv.Draining > 0:
			gv.Level = "warn"
		default:
			gv.Level = "ok"
		}
		data.Groups = append(data.Groups, gv)
	}
	// Trouble first: groups that cannot serve, then degraded ones, then
	// the rest, each by name.
	slices.SortStableFunc(data.Groups, func(a, b groupView) int { return cmp.Compare(levelRank(a.Level), levelRank(b.Level)) })
	data.Level, data.Headline, data.Summary = summarize(d, data.Groups)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := page.Execute(w, data); err != nil {
		h.cfg.log.Error("status page", "err", err)
	}
}

// levelRank orders levels, worst first.
func levelRank(l string) int {
	switch l {
	case "bad":
		return 0
	case "warn":
		return 1
	}
	return 2
}

// summarize says how the load balancer is doing: the worst level, a
// headline, and a line per thing worth a look, worst first.
func summarize(d lb.Diagnosis, groups []groupView) (level, headline string, lines []summaryLine) {
	worst := "ok"
	raise := func(l string) {
		if levelRank(l) < levelRank(worst) {
			worst = l
		}
	}
	serving := 0
	for _, l := range d.Listeners {
		if l.OK {
			serving++
			continue
		}
		raise("bad")
		why := "not serving"
		if len(l.Reasons) > 0 {
			why = l.Reasons[0]
		}
		lines = append(lines, summaryLine{"bad", "Listener " + l.Name + " (" + l.Addr + "): " + why})
	}
	failing, degraded := 0, 0
	for _, g := range groups {
		total := len(g.Targets)
		text := "Group " + g.Name + ": " + strconv.Itoa(g.Healthy) + " of " + strconv.Itoa(total) + " targets serving"
		if g.Draining > 0 {
			text += ", " + strconv.Itoa(g.Draining) + " draining or at weight 0"
		}
		if down := total - g.Healthy - g.Draining; down > 0 {
			text += ", " + strconv.Itoa(down) + " failing"
		}
		switch g.Level {
		case "bad":
			failing++
		case "warn":
			if g.Healthy+g.Draining < total {
				degraded++
			}
		}
		raise(g.Level)
		lines = append(lines, summaryLine{g.Level, text})
	}
	fl := "ok"
	if d.Flows.Full {
		fl = "bad"
	}
	raise(fl)
	pct := 0.0
	if d.Flows.Max > 0 {
		pct = 100 * float64(d.Flows.Active) / float64(d.Flows.Max)
	}
	lines = append(lines, summaryLine{fl, fmt.Sprintf("Flow table: %d of %d flows (%.0f%%)", d.Flows.Active, d.Flows.Max, pct)})
	slices.SortStableFunc(lines, func(a, b summaryLine) int { return cmp.Compare(levelRank(a.Level), levelRank(b.Level)) })
	switch worst {
	case "bad":
		headline = "Trouble: "
		var parts []string
		if n := len(d.Listeners) - serving; n > 0 {
			parts = append(parts, plural(n, "listener", "listeners")+" not serving")
		}
		if failing > 0 {
			parts = append(parts, plural(failing, "group", "groups")+" with no target serving")
		}
		if d.Flows.Full {
			parts = append(parts, "the flow table is full")
		}
		headline += strings.Join(parts, ", ")
	case "warn":
		if degraded > 0 {
			headline = "Degraded: " + plural(degraded, "group has", "groups have") + " failing targets; traffic still flows"
		} else {
			headline = "Serving; some targets are draining or at weight 0"
		}
	default:
		headline = "OK: every listener serves and every target is healthy"
	}
	return worst, headline, lines
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// targetLevel is a target's colour: a deliberate pause (draining, weight
// 0) is amber, a failure red.
func targetLevel(t lb.TargetDiagnosis) string {
	switch {
	case t.OK:
		return "ok"
	case !t.DrainUntil.IsZero() || t.Drained || t.Weight == 0 && t.Health.State == healthcheck.Healthy:
		return "warn"
	}
	return "bad"
}

func healthWord(s healthcheck.Status) string {
	if s.State == healthcheck.Healthy {
		return "healthy"
	}
	return "unhealthy"
}

// state says in a few words whether a target gets new traffic, and if not
// the main reason.
func state(t lb.TargetDiagnosis) string {
	switch {
	case !t.DrainUntil.IsZero():
		return "draining until " + t.DrainUntil.Format(time.TimeOnly)
	case t.Drained:
		return "drained by an operator"
	case t.Health.Ejected:
		return "ejected until " + t.Health.EjectedUntil.Format(time.TimeOnly)
	case t.Weight == 0:
		return "weight 0: no new traffic"
	case t.OK && t.HealthCheckOff:
		return "serving (health checks off)"
	case t.OK:
		return "serving"
	}
	return "not serving"
}

// recent renders the last check results.
func recent(rs []healthcheck.Result) string {
	var parts []string
	for _, r := range rs[max(0, len(rs)-3):] {
		res := "ok"
		if !r.OK {
			res = r.Reason
		}
		parts = append(parts, r.Time.Format(time.TimeOnly)+" "+res)
	}
	return strings.Join(parts, "; ")
}
