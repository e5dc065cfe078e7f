package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/lbkit/lbkit/lb"
)

// WithRuntime turns the runtime API's changes on: adding and removing
// targets, weights, drains and health checks through r (see Runtime), and
// GET /runtime to list them. Without it those calls answer 501; the
// listing and showing calls work either way.
func WithRuntime(r *Runtime) Option { return func(c *config) { c.runtime = r } }

// WithUpgrade sets the function POST /upgrade calls to replace the running
// program by a new process of its binary (see cmd/lbd): it returns the new
// process's ID once that one serves, and the program then drains and
// exits. Default: none (501).
func WithUpgrade(f func(context.Context) (pid int, err error)) Option {
	return func(c *config) { c.upgrade = f }
}

// maxBody bounds the JSON bodies the runtime API reads.
const maxBody = 64 << 10

// routeAPI registers the runtime API on h's mux.
func (h *Handler) routeAPI() {
	h.mux.HandleFunc("GET /listeners", h.listListeners)
	h.mux.HandleFunc("GET /listeners/{name}", h.showListener)
	h.mux.HandleFunc("GET /groups", h.listGroups)
	h.mux.HandleFunc("GET /groups/{group}", h.showGroup)
	h.mux.HandleFunc("GET /groups/{group}/targets/{id}", h.showTarget)
	h.mux.HandleFunc("POST /groups/{group}/targets", h.addTarget)
	h.mux.HandleFunc("PATCH /groups/{group}/targets/{id}", h.patchTarget)
	h.mux.HandleFunc("DELETE /groups/{group}/targets/{id}", h.removeTarget)
	h.mux.HandleFunc("GET /runtime", h.listChanges)
	h.mux.HandleFunc("DELETE /runtime", h.resetChanges)
	h.mux.HandleFunc("POST /upgrade", h.upgradeProcess)
}

// ListenerView is one listener as GET /listeners/{name} shows it.
type ListenerView struct {
	Stats     lb.ListenerStats     `json:"stats"`
	Diagnosis lb.ListenerDiagnosis `json:"diagnosis"`
}

// GroupView is one target group as GET /groups/{group} shows it.
type GroupView struct {
	Stats     lb.GroupStats     `json:"stats"`
	Diagnosis lb.GroupDiagnosis `json:"diagnosis"`
	// Changes are the runtime changes made to its targets.
	Changes []Change `json:"changes"`
}

// TargetView is one target as GET /groups/{group}/targets/{id} and the
// calls that change it answer.
type TargetView struct {
	Group     string             `json:"group"`
	Stats     lb.TargetStats     `json:"stats"`
	Diagnosis lb.TargetDiagnosis `json:"diagnosis"`
	// Change is what was changed at run time, if anything.
	Change *Change `json:"change,omitempty"`
}

// ChangesView is the body of GET /runtime.
type ChangesView struct {
	Changes []Change `json:"changes"`
	// OnReload says what a reload does to them.
	OnReload string `json:"on_reload"`
}

// OnReloadText is what a reload does to runtime changes, as /runtime and
// the status page say it.
const OnReloadText = "kept: applied again after every reload, except those the new file makes impossible (logged); DELETE /runtime and a reload go back to the file"

func (h *Handler) listListeners(w http.ResponseWriter, _ *http.Request) {
	ls := h.lb.Stats().Listeners
	if ls == nil {
		ls = []lb.ListenerStats{}
	}
	writeJSON(w, http.StatusOK, ls)
}

func (h *Handler) showListener(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var v ListenerView
	found := false
	for _, l := range h.lb.Stats().Listeners {
		if l.Name == name {
			v.Stats, found = l, true
		}
	}
	for _, l := range h.lb.Diagnose(lb.Query{}).Listeners {
		if l.Name == name {
			v.Diagnosis = l
		}
	}
	if !found {
		notFound(w, "listener %q", name)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (h *Handler) listGroups(w http.ResponseWriter, _ *http.Request) {
	gs := h.lb.Stats().Groups
	if gs == nil {
		gs = []lb.GroupStats{}
	}
	writeJSON(w, http.StatusOK, gs)
}

func (h *Handler) showGroup(w http.ResponseWriter, r *http.Request) {
	v, ok := h.group(r.PathValue("group"))
	if !ok {
		notFound(w, "target group %q", r.PathValue("group"))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// group returns a group's view.
func (h *Handler) group(name string) (GroupView, bool) {
	v := GroupView{Changes: []Change{}}
	found := false
	for _, g := range h.lb.Stats().Groups {
		if g.Name == name {
			v.Stats, found = g, true
		}
	}
	for _, g := range h.lb.Diagnose(lb.Query{}).Groups {
		if g.Name == name {
			v.Diagnosis = g
		}
	}
	if rt := h.cfg.runtime; rt != nil {
		for _, c := range rt.Changes() {
			if c.Group == name {
				v.Changes = append(v.Changes, c)
			}
		}
	}
	return v, found
}

func (h *Handler) showTarget(w http.ResponseWriter, r *http.Request) {
	group, id := r.PathValue("group"), r.PathValue("id")
	v, ok := h.target(group, id)
	if !ok {
		notFound(w, "target %q of target group %q", id, group)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// target returns a target's view.
func (h *Handler) target(group, id string) (TargetView, bool) {
	g, ok := h.group(group)
	if !ok {
		return TargetView{}, false
	}
	v := TargetView{Group: group}
	found := false
	for _, t := range g.Stats.Targets {
		if t.ID == id {
			v.Stats, found = t, true
		}
	}
	for _, t := range g.Diagnosis.Targets {
		if t.ID == id {
			v.Diagnosis = t
		}
	}
	for _, c := range g.Changes {
		if c.Target == id {
			v.Change = &c
		}
	}
	return v, found
}

// AddTargetRequest is the body of POST /groups/{group}/targets.
type AddTargetRequest struct {
	// Address is the target's "host:port"; required.
	Address string `json:"address"`
	// ID names the target; default: its address.
	ID string `json:"id,omitempty"`
	// Weight is its weight, 0..100; default (0): the default weight.
	Weight int `json:"weight,omitempty"`
}

// PatchTargetRequest is the body of PATCH /groups/{group}/targets/{id}:
// the fields present are changed, in this order.
type PatchTargetRequest struct {
	// Weight sets the weight, 0..100.
	Weight *int `json:"weight,omitempty"`
	// Drained drains the target (true: no new traffic, its connections
	// closed after the group's deregistration delay) or brings it back.
	Drained *bool `json:"drained,omitempty"`
	// HealthCheck turns its health checks on or off (off: treated as
	// healthy).
	HealthCheck *bool `json:"health_check,omitempty"`
}

func (h *Handler) addTarget(w http.ResponseWriter, r *http.Request) {
	rt, ok := h.runtimeOrRefuse(w)
	if !ok {
		return
	}
	group := r.PathValue("group")
	var req AddTargetRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Address == "" {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: `"address" is required`})
		return
	}
	if err := rt.AddTarget(group, req.ID, req.Address, req.Weight); err != nil {
		h.changeFailed(w, r, err)
		return
	}
	id := req.ID
	if id == "" {
		id = req.Address
	}
	h.cfg.log.Info("target added over the runtime API", "remote", r.RemoteAddr, "group", group, "target", id, "address", req.Address)
	v, _ := h.target(group, id)
	writeJSON(w, http.StatusCreated, v)
}

func (h *Handler) patchTarget(w http.ResponseWriter, r *http.Request) {
	rt, ok := h.runtimeOrRefuse(w)
	if !ok {
		return
	}
	group, id := r.PathValue("group"), r.PathValue("id")
	var req PatchTargetRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Weight == nil && req.Drained == nil && req.HealthCheck == nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: `nothing to change: give "weight", "drained" or "health_check"`})
		return
	}
	var done []string
	step := func(what string, err error) bool {
		if err != nil {
			if len(done) > 0 {
				err = fmt.Errorf("%w (already changed: %s)", err, strings.Join(done, ", "))
			}
			h.changeFailed(w, r, err)
			return false
		}
		done = append(done, what)
		return true
	}
	if req.Weight != nil && !step(fmt.Sprintf("weight %d", *req.Weight), rt.SetWeight(group, id, *req.Weight)) {
		return
	}
	if req.Drained != nil && !step(fmt.Sprintf("drained %t", *req.Drained), rt.SetDrained(group, id, *req.Drained)) {
		return
	}
	if req.HealthCheck != nil && !step(fmt.Sprintf("health_check %t", *req.HealthCheck), rt.SetHealthCheck(group, id, *req.HealthCheck)) {
		return
	}
	h.cfg.log.Info("target changed over the runtime API", "remote", r.RemoteAddr, "group", group, "target", id, "changes", strings.Join(done, ", "))
	v, _ := h.target(group, id)
	writeJSON(w, http.StatusOK, v)
}

func (h *Handler) removeTarget(w http.ResponseWriter, r *http.Request) {
	rt, ok := h.runtimeOrRefuse(w)
	if !ok {
		return
	}
	group, id := r.PathValue("group"), r.PathValue("id")
	if err := rt.RemoveTarget(group, id); err != nil {
		h.changeFailed(w, r, err)
		return
	}
	h.cfg.log.Info("target removed over the runtime API", "remote", r.RemoteAddr, "group", group, "target", id)
	writeJSON(w, http.StatusOK, reloadBody{OK: true, Message: fmt.Sprintf("target %s of group %s deregistered: no new traffic; its connections continue until the group's deregistration delay passes", id, group)})
}

func (h *Handler) listChanges(w http.ResponseWriter, _ *http.Request) {
	rt, ok := h.runtimeOrRefuse(w)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, ChangesView{Changes: rt.Changes(), OnReload: OnReloadText})
}

// resetChanges answers DELETE /runtime: the changes are forgotten and the
// configuration is reloaded, so that the load balancer is the file's again.
func (h *Handler) resetChanges(w http.ResponseWriter, r *http.Request) {
	rt, ok := h.runtimeOrRefuse(w)
	if !ok {
		return
	}
	if h.cfg.reload == nil {
		writeJSON(w, http.StatusNotImplemented, errorBody{Error: "reloading is not configured: the changes cannot be undone by reloading the file"})
		return
	}
	n := len(rt.Changes())
	rt.Reset()
	h.cfg.log.Info("runtime changes discarded over the runtime API; reloading", "remote", r.RemoteAddr, "changes", n)
	h.reload(w, r)
}

func (h *Handler) upgradeProcess(w http.ResponseWriter, r *http.Request) {
	if h.cfg.upgrade == nil {
		writeJSON(w, http.StatusNotImplemented, errorBody{Error: "upgrading is not configured"})
		return
	}
	pid, err := h.cfg.upgrade(r.Context())
	if err != nil {
		h.cfg.log.Warn("upgrade requested over HTTP failed", "remote", r.RemoteAddr, "err", err)
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, UpgradeBody{OK: true, OldPID: os.Getpid(), NewPID: pid,
		Message: fmt.Sprintf("process %d serves; process %d drains and exits", pid, os.Getpid())})
}

// UpgradeBody is the answer of POST /upgrade.
type UpgradeBody struct {
	OK      bool   `json:"ok"`
	OldPID  int    `json:"old_pid"`
	NewPID  int    `json:"new_pid"`
	Message string `json:"message"`
}

// runtimeOrRefuse returns the Runtime, or answers 501.
func (h *Handler) runtimeOrRefuse(w http.ResponseWriter) (*Runtime, bool) {
	if h.cfg.runtime == nil {
		writeJSON(w, http.StatusNotImplemented, errorBody{Error: "the runtime API is not configured (WithRuntime)"})
		return nil, false
	}
	return h.cfg.runtime, true
}

// changeFailed answers a change the load balancer refused: 404 for what
// does not exist, 422 otherwise.
func (h *Handler) changeFailed(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusUnprocessableEntity
	if errors.Is(err, lb.ErrNotFound) {
		code = http.StatusNotFound
	}
	h.cfg.log.Warn("runtime API change refused", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "err", err)
	writeJSON(w, code, reloadBody{Error: err.Error(), Problems: problems(err)})
}

// readJSON decodes a request's JSON body into v (unknown fields refused),
// or answers 400 and returns false.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("more than one JSON value")
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "the body is not the JSON this call takes: " + err.Error()})
		return false
	}
	return true
}

func notFound(w http.ResponseWriter, format string, a ...any) {
	writeJSON(w, http.StatusNotFound, errorBody{Error: fmt.Sprintf(format, a...) + " does not exist"})
}
