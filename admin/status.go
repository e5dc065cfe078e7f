package admin

import (
	"cmp"
	"embed"
	"html/template"
	"net/http"
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
	Diagnosis lb.Diagnosis
	Groups    []groupView
}

type groupView struct {
	lb.GroupDiagnosis
	Targets []targetView
}

// targetView is one row of a group's target table.
type targetView struct {
	lb.TargetDiagnosis
	Health   string // "healthy", "unhealthy"
	Reason   string // the health checks' last word
	State    string // "serving", "draining until 15:04:05", "ejected", "weight 0", ...
	Requests uint64
	Recent   string // the last checks, oldest first
}

// status renders the status page.
func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	d := h.lb.Diagnose(lb.Query{})
	st := h.lb.Stats()
	requests := map[[2]string]uint64{}
	for _, g := range st.Groups {
		for _, t := range g.Targets {
			requests[[2]string{g.Name, t.ID}] = t.Counters.Requests
		}
	}
	data := statusData{Title: h.cfg.title, Time: d.Time, Diagnosis: d}
	if n, err := strconv.Atoi(r.URL.Query().Get("refresh")); err == nil && n > 0 {
		data.Refresh = min(n, 3600)
	}
	for _, g := range d.Groups {
		gv := groupView{GroupDiagnosis: g}
		for _, t := range g.Targets {
			gv.Targets = append(gv.Targets, targetView{
				TargetDiagnosis: t,
				Health:          healthWord(t.Health),
				Reason:          cmp.Or(t.Health.Reason, "not checked yet"),
				State:           state(t),
				Requests:        requests[[2]string{g.Name, t.ID}],
				Recent:          recent(t.Health.Results),
			})
		}
		data.Groups = append(data.Groups, gv)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := page.Execute(w, data); err != nil {
		h.cfg.log.Error("status page", "err", err)
	}
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
	case t.Health.Ejected:
		return "ejected until " + t.Health.EjectedUntil.Format(time.TimeOnly)
	case t.Weight == 0:
		return "weight 0: no new traffic"
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
