package proxy

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/stretchr/testify/require"
)

// recorder is an Observer that records what it sees, as text, and sets a
// header on every attempt.
type recorder struct {
	mu     sync.Mutex // guards events
	events []string
	ended  chan struct{} // a request ended
}

type recReq struct{ r *recorder }

func (o *recorder) add(e string) {
	o.mu.Lock()
	o.events = append(o.events, e)
	o.mu.Unlock()
}

func (o *recorder) StartRequest(r *ObservedRequest) RequestObserver {
	o.add("start " + r.Method + " " + r.Path + " rule=" + r.Rule + " group=" + r.Group + " tp=" + strings.Join(r.Header("traceparent"), ","))
	return recReq{o}
}

func (q recReq) StartAttempt(a *ObservedAttempt) {
	q.r.add("attempt " + a.Target)
	a.SetHeader("Traceparent", "from-observer")
	a.SetHeader("traceparent", "from-observer-"+a.Target) // replaces the first
}

func (q recReq) EndAttempt(a *ObservedAttempt) {
	e := "end " + a.Target
	if a.Err != nil {
		e += " err"
	}
	if a.Status != 0 {
		e += " " + http.StatusText(a.Status)
	}
	q.r.add(e)
}

func (q recReq) EndRequest(r *ObservedRequest) {
	q.r.add("done " + http.StatusText(r.Status) + " attempts=" + string(rune('0'+r.Attempts)))
	q.r.ended <- struct{}{}
}

func (o *recorder) wait(t *testing.T) []string {
	t.Helper()
	select {
	case <-o.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("no request ended")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	ev := o.events
	o.events = nil
	return ev
}

// TestObserver checks the Observer hook on both front ends: the order of
// the calls, a retry as two attempts, and the header an attempt sets
// replacing the client's.
func TestObserver(t *testing.T) {
	for _, via := range fronts {
		t.Run(via, func(t *testing.T) {
			live := newTarget(t, "live", nil)
			b, err := balancer.New(balancer.WithTargets(
				balancer.Target{ID: "dead", Addr: closedAddr(t), Weight: 100},
				balancer.Target{ID: "live", Addr: live.addr(), Weight: 1},
			))
			require.NoError(t, err)
			o := &recorder{ended: make(chan struct{}, 4)}
			h := configured(t, &HTTP{Observer: o}, forwardTo(t, &Upstream{Name: "web", Balancer: b}))
			addr := serveVia(t, h, via)

			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/a?b=c", nil)
			req.Header.Set("Traceparent", "from-client")
			resp, err := client(t).Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, 200, resp.StatusCode)
			require.Equal(t, []string{
				"start GET /a rule=default group=web tp=from-client",
				"attempt dead", "end dead err",
				"attempt live", "end live OK",
				"done OK attempts=2",
			}, o.wait(t))
			require.Equal(t, []string{"from-observer-live"}, live.lastRequest().Header.Values("Traceparent"))
		})
	}
}

// TestObserverNil checks that without an observer the client's trace
// header goes through untouched.
func TestObserverNil(t *testing.T) {
	live := newTarget(t, "live", nil)
	h := configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "web", live)))
	addr := serve(t, h)
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	req.Header.Set("Traceparent", "from-client")
	resp, err := client(t).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, []string{"from-client"}, live.lastRequest().Header.Values("Traceparent"))
}
