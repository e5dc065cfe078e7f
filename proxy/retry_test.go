package proxy

import (
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBudget(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newBudget(Retry{Ratio: 0.2, MinPerSecond: 1}.withDefaults(), t0)
	assert.True(t, b.withdraw(t0), "the floor's first token")
	assert.False(t, b.withdraw(t0))
	for range 5 {
		b.deposit() // 5 requests × 0.2
	}
	assert.True(t, b.withdraw(t0))
	assert.False(t, b.withdraw(t0))
	assert.True(t, b.withdraw(t0.Add(time.Second)), "one more after a second of floor")
	assert.False(t, b.withdraw(t0.Add(time.Second)))
	// The bucket is capped: a long quiet spell does not bank a storm.
	late := t0.Add(time.Hour)
	n := 0
	for b.withdraw(late) {
		n++
	}
	assert.Equal(t, 100, n)
}

// deadAndLive is an Upstream whose heavier target refuses connections, so
// most first attempts fail to connect.
func deadAndLive(t *testing.T, live *target) *Upstream {
	b, err := balancer.New(balancer.WithTargets(
		balancer.Target{ID: "dead", Addr: closedAddr(t), Weight: 100},
		balancer.Target{ID: live.name, Addr: live.addr(), Weight: 1},
	))
	require.NoError(t, err)
	return &Upstream{Name: "web", Balancer: b}
}

func TestRetryConnectRefused(t *testing.T) {
	live := newTarget(t, "live", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "live:"+string(b))
	})
	up := deadAndLive(t, live)
	var failures atomic.Int64
	up.OnResult = func(id string, err error) {
		if err != nil {
			assert.Equal(t, "dead", id)
			failures.Add(1)
		}
	}
	var logs logBuffer
	h := configured(t, &HTTP{AccessLog: logs.logger()}, forwardTo(t, up))
	addr := serve(t, h)
	c := client(t)
	// A POST is retried too: it never reached a target.
	resp, err := c.Post("http://"+addr+"/", "text/plain", strings.NewReader("body"))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "live:body", string(b))
	m := lastLog(t, h, &logs)
	assert.Equal(t, "-, 200", m["upstream_status"])
	assert.Contains(t, m["upstream_addr"], ", "+live.addr())
	assert.Equal(t, "-", strings.Split(m["upstream_header_time"].(string), ", ")[0])
	assert.Equal(t, uint64(1), h.Stats().Retries)
	assert.Equal(t, int64(1), failures.Load(), "passive health hears of the refusal")
	st := up.Stats()
	assert.Equal(t, uint64(1), st.Targets[0].ConnectErrors)
}

func TestRetryResponseTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var slowGot atomic.Int64
	slow := newTarget(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		slowGot.Add(1)
		io.ReadAll(r.Body)
		<-release
	})
	fast := newTarget(t, "fast", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+":"+string(b))
	})
	b, err := balancer.New(balancer.WithTargets(
		balancer.Target{ID: "slow", Addr: slow.addr(), Weight: 100},
		balancer.Target{ID: "fast", Addr: fast.addr(), Weight: 1},
	))
	require.NoError(t, err)
	up := &Upstream{Name: "web", Balancer: b}
	h := configured(t, &HTTP{}, forwardTo(t, up), Timeouts{Response: 100 * time.Millisecond})
	addr := serve(t, h)
	c := client(t)

	do := func(method, body string) (int, string) {
		req, err := http.NewRequest(method, "http://"+addr+"/", strings.NewReader(body))
		require.NoError(t, err)
		resp, err := c.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(got)
	}
	code, body := do("GET", "")
	assert.Equal(t, 200, code)
	assert.Equal(t, "GET:", body)
	// PUT is idempotent and its body fits the replay cap: sent again whole.
	code, body = do("PUT", "replayed body")
	assert.Equal(t, 200, code)
	assert.Equal(t, "PUT:replayed body", body)
	assert.Equal(t, uint64(2), h.Stats().Retries)
	// POST reached the slow target: not retried.
	code, _ = do("POST", "x")
	assert.Equal(t, 504, code)
	assert.Equal(t, uint64(2), h.Stats().Retries)
	// A PUT body over the replay cap is not retried either.
	h2 := configured(t, &HTTP{Retry: Retry{BodyLimit: 4}}, forwardTo(t, up), Timeouts{Response: 100 * time.Millisecond})
	addr2 := serve(t, h2)
	req, _ := http.NewRequest("PUT", "http://"+addr2+"/", strings.NewReader("longer than four"))
	resp, err := c.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 504, resp.StatusCode)
	assert.Zero(t, h2.Stats().Retries)
}

func TestRetryKeepsTheNextRequestsTurn(t *testing.T) {
	// Two targets, one of which never answers: each request that starts
	// on it is retried on the other, and the next request starts on the
	// other too, as it would without the failure. A retry that consumed a
	// round-robin turn made nearly every request start on the slow target
	// and wait out the response timeout.
	release := make(chan struct{})
	defer close(release)
	var slowGot atomic.Int64
	slow := newTarget(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		slowGot.Add(1)
		<-release
	})
	fast := newTarget(t, "fast", nil)
	h := configured(t, &HTTP{}, forwardTo(t, upstreamOf(t, "web", slow, fast)), Timeouts{Response: 50 * time.Millisecond})
	addr := serve(t, h)
	c := client(t)
	for range 8 {
		code, body := get(t, c, "http://"+addr+"/")
		require.Equal(t, 200, code)
		require.Equal(t, "fast", body)
	}
	assert.Equal(t, int64(4), slowGot.Load(), "half the requests start on each target")
}

func TestRetryNoneWithStickiness(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	slow := newTarget(t, "slow", func(w http.ResponseWriter, r *http.Request) { <-release })
	fast := newTarget(t, "fast", nil)
	up := upstreamOf(t, "web", slow, fast)
	up.SetSticky(&mapPolicy{m: map[netip.Addr]string{netip.MustParseAddr("127.0.0.1"): "slow"}})
	h := configured(t, &HTTP{}, forwardTo(t, up), Timeouts{Response: 100 * time.Millisecond})
	addr := serve(t, h)
	code, _ := get(t, client(t), "http://"+addr+"/")
	assert.Equal(t, 504, code, "no retry with stickiness: 504 directly")
	assert.Zero(t, h.Stats().Retries)
}

func TestRetryBounds(t *testing.T) {
	var ts []balancer.Target
	for _, id := range []string{"d1", "d2", "d3", "d4"} {
		ts = append(ts, balancer.Target{ID: id, Addr: closedAddr(t), Weight: 1})
	}
	b, err := balancer.New(balancer.WithTargets(ts...))
	require.NoError(t, err)
	var logs logBuffer
	h := configured(t, &HTTP{AccessLog: logs.logger(), Retry: Retry{Attempts: 3, MinPerSecond: 2}}, forwardTo(t, &Upstream{Name: "web", Balancer: b}))
	addr := serve(t, h)
	c := client(t)
	code, _ := get(t, c, "http://"+addr+"/")
	assert.Equal(t, 502, code)
	assert.Equal(t, "-, -, -", lastLog(t, h, &logs)["upstream_status"], "three attempts, the first included")
	assert.Equal(t, uint64(2), h.Stats().Retries)
	// The budget (2 tokens to start, 0.2 per request) is spent: the next request
	// tries once, then is refused a retry.
	code, _ = get(t, c, "http://"+addr+"/")
	assert.Equal(t, 502, code)
	assert.Equal(t, uint64(1), h.Stats().RetriesRefused)
}

// BenchmarkRetryBudget measures the deposit every request makes into the
// retry budget, from every core at once, beside the baseline of an atomic
// add per request (what it did before): a full bucket is only read.
// Run it with -cpu 1,2,4,8.
func BenchmarkRetryBudget(b *testing.B) {
	b.Run("impl=lbkit", func(b *testing.B) {
		bg := newBudget(Retry{}.withDefaults(), time.Now())
		bg.tokens.Store(bg.cap)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				bg.deposit()
			}
		})
	})
	b.Run("impl=atomic-add", func(b *testing.B) {
		var tokens atomic.Int64
		const capacity = 100_000
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if tokens.Add(200) > capacity {
					tokens.Store(capacity)
				}
			}
		})
	})
}
