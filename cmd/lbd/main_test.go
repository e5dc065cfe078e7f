package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/lbkit/lbkit/config"
	"github.com/lbkit/lbkit/lb"
)

// certmagic (the acme integration) keeps goroutines of its own at package
// level beyond a manager's Close: a lock file's refresher, which ends by
// itself within 5 s, and each CA account's rate limiter.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).loop"),
	)
}

type dtoFamily = dto.MetricFamily

// sample reads the sample configuration, checked as lbd checks it.
func sample(t *testing.T) *config.File {
	t.Helper()
	f, err := config.Load("lbd.yaml")
	require.NoError(t, err, "the sample configuration is valid")
	return f
}

// fast makes a configuration quick to test: listeners on free ports,
// health checks every 200 ms, a target healthy after one check and
// unhealthy only after 5 failed ones with a generous timeout, so that a
// loaded machine (CI runs every package's tests at once, under -race)
// does not make targets flap and counts inexact.
func fast(f *config.File) {
	for i := range f.Listeners {
		f.Listeners[i].Address = "127.0.0.1:0"
	}
	for i := range f.TargetGroups {
		h := f.TargetGroups[i].HealthCheck
		h.Interval, h.Timeout = config.Duration(200*time.Millisecond), config.Duration(150*time.Millisecond)
		h.HealthyThreshold, h.UnhealthyThreshold = 1, 5
	}
}

func write(t *testing.T, path string, f *config.File) {
	t.Helper()
	b, err := yaml.Marshal(f)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o600))
}

// logs collects a daemon's JSON log records as they come.
type logs struct {
	mu      sync.Mutex // guards records and raw
	records []map[string]any
	raw     bytes.Buffer
	more    chan struct{} // signalled on every record
}

func (l *logs) read(r io.Reader) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		var rec map[string]any
		_ = json.Unmarshal(s.Bytes(), &rec) // a non-JSON line (a race report) is kept raw
		l.mu.Lock()
		l.raw.Write(s.Bytes())
		l.raw.WriteByte('\n')
		if rec != nil {
			l.records = append(l.records, rec)
		}
		l.mu.Unlock()
		select {
		case l.more <- struct{}{}:
		default:
		}
	}
}

// wait returns the first record from index from on that matches, and the
// index after it, failing the test after timeout.
func (l *logs) wait(t *testing.T, from int, timeout time.Duration, match func(map[string]any) bool) (map[string]any, int) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		l.mu.Lock()
		for i := from; i < len(l.records); i++ {
			if match(l.records[i]) {
				rec := l.records[i]
				l.mu.Unlock()
				return rec, i + 1
			}
		}
		from = len(l.records)
		l.mu.Unlock()
		select {
		case <-l.more:
		case <-deadline:
			t.Fatalf("no such log record within %s; the log:\n%s", timeout, l.String())
		}
	}
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.raw.String()
}

func msg(m string) func(map[string]any) bool {
	return func(r map[string]any) bool { return r["msg"] == m }
}

// TestDaemon builds lbd and runs it as a real process from the sample
// configuration: traffic through each listener, the admin endpoints (the
// Prometheus text parsed back), reloads with a good and a bad file by POST
// /reload and by SIGHUP (a connection established before them unbroken),
// and a graceful stop by SIGTERM that lets a request in flight finish.
//
// A real process, not run() in the test, because signals are part of what
// is tested: a SIGHUP sent to the test binary would reach the test's own
// signal handling, and a wrong one would kill it. When the test runs under
// -race, lbd is built with -race too and must report no race.
func TestDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	dir := t.TempDir()
	bin := build(t, dir)

	// Targets: the web group's are the test's own, to hold a request open
	// during the graceful stop; the echo and dns groups' are lbd's demo
	// targets, on free ports.
	hold, release := make(chan struct{}, 1), make(chan struct{})
	webAddrs := map[string]string{}
	for _, id := range []string{"web-1", "web-2", "web-3"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/hold" {
				hold <- struct{}{}
				<-release
			}
			fmt.Fprintln(w, id)
		}))
		defer srv.Close()
		webAddrs[id] = srv.Listener.Addr().String()
	}
	f := sample(t)
	fast(f)
	for gi := range f.TargetGroups {
		g := &f.TargetGroups[gi]
		for ti := range g.Targets {
			tg := &g.Targets[ti]
			if a, ok := webAddrs[tg.ID]; ok {
				tg.Address = a
				continue
			}
			d, err := startDemoTarget(netSockets{}, g.Protocol, tg.ID, "127.0.0.1:0")
			require.NoError(t, err)
			defer d.stop()
			tg.Address = d.addr
		}
	}
	cfgPath := filepath.Join(dir, "lbd.yaml")
	write(t, cfgPath, f)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "-config", cfgPath, "-admin", "127.0.0.1:0", "-log-format", "json", "-log-level", "debug", "-shutdown-timeout", "20s")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	lg := &logs{more: make(chan struct{}, 1)}
	require.NoError(t, cmd.Start())
	readDone := make(chan struct{})
	go func() { defer close(readDone); lg.read(stderr) }()
	exited := false
	defer func() {
		if !exited {
			cmd.Process.Kill()
			<-readDone
			cmd.Wait()
		}
	}()

	rec, at := lg.wait(t, 0, 60*time.Second, msg("admin endpoint listening"))
	adminURL := "http://" + rec["admin"].(string)
	_, at = lg.wait(t, at, 30*time.Second, msg("lbd ready"))
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	getJSON := func(path string, v any) {
		t.Helper()
		resp, err := client.Get(adminURL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
	}
	addrs := func() map[string]string {
		var st lb.Stats
		getJSON("/stats", &st)
		out := map[string]string{}
		for _, l := range st.Listeners {
			out[l.Name] = l.Addr
		}
		return out
	}
	// Every target serving (bounded: checks run every 100 ms).
	require.Eventually(t, func() bool {
		var h struct {
			Targets []struct{ Serving bool }
		}
		getJSON("/health", &h)
		n := 0
		for _, tg := range h.Targets {
			if tg.Serving {
				n++
			}
		}
		return n == 7
	}, 20*time.Second, 50*time.Millisecond)
	la := addrs()

	// Traffic through each listener.
	web := func(addr string, n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for range n {
			resp, err := client.Get("http://" + addr + "/")
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			got[strings.TrimSpace(string(b))]++
		}
		return got
	}
	assert.Equal(t, map[string]int{"web-1": 2, "web-2": 2, "web-3": 4}, web(la["http"], 8), "weights 1, 1, 2")
	tcpSeen := map[string]bool{}
	for range 4 {
		c, err := net.DialTimeout("tcp", la["tcp"], 5*time.Second)
		require.NoError(t, err)
		tcpSeen[echoLine(t, c, "hello")] = true
		c.Close()
	}
	assert.Equal(t, map[string]bool{"echo-1: hello": true, "echo-2: hello": true}, tcpSeen)
	udpSeen := map[string]bool{}
	for range 4 {
		udpSeen[echoUDP(t, la["udp"], "hi")] = true
	}
	assert.Equal(t, map[string]bool{"dns-1: hi": true, "dns-2: hi": true}, udpSeen)

	// The admin endpoints.
	families := scrape(t, client, adminURL+"/metrics")
	assert.Equal(t, 8.0, value(t, families, "lbkit_http_requests_total", map[string]string{"listener": "http", "code_class": "2xx"}))
	assert.Equal(t, 4.0, value(t, families, "lbkit_flows_new_total", map[string]string{"protocol": "tcp"}))
	assert.Equal(t, 4.0, value(t, families, "lbkit_flows_new_total", map[string]string{"protocol": "udp"}))
	assert.Equal(t, 4.0, value(t, families, "lbkit_target_requests_total", map[string]string{"group": "web", "target": "web-3"}))
	assert.Equal(t, 4.0, value(t, families, "lbkit_target_response_seconds", map[string]string{"group": "web", "target": "web-3"}), "the response-time histogram counted web-3's responses")
	assert.Contains(t, families, "go_goroutines", "the Go runtime's metrics are served beside lbkit's")
	if t.Failed() {
		var st lb.Stats
		getJSON("/stats", &st)
		b, _ := json.MarshalIndent(st, "", "  ")
		t.Logf("stats: %s\nlog:\n%s", b, lg)
	}
	_, tcpPort, _ := net.SplitHostPort(la["tcp"])
	var d lb.Diagnosis
	getJSON("/diagnose?client=127.0.0.1&port="+tcpPort, &d)
	assert.True(t, d.OK, "%v", d.Problems)
	require.Len(t, d.Listeners, 1)
	assert.Equal(t, "tcp", d.Listeners[0].Name)
	resp, err := client.Get(adminURL + "/")
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, id := range []string{"web-1", "echo-2", "dns-1"} {
		assert.Contains(t, string(page), "<td>"+id+"</td>")
	}

	// A connection established before the reloads, checked after each.
	kept, err := net.DialTimeout("tcp", la["tcp"], 5*time.Second)
	require.NoError(t, err)
	defer kept.Close()
	keptTarget, _, _ := strings.Cut(echoLine(t, kept, "before"), ":")

	reload := func() (int, map[string]any) {
		t.Helper()
		resp, err := client.Post(adminURL+"/reload", "", nil)
		require.NoError(t, err)
		defer resp.Body.Close()
		var body map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		return resp.StatusCode, body
	}

	// POST /reload, good: web-3 drained by weight 0.
	*f.TargetGroups[0].Targets[2].Weight = 0
	write(t, cfgPath, f)
	code, body := reload()
	require.Equal(t, http.StatusOK, code, "%v", body)
	_, at = lg.wait(t, at, 10*time.Second, func(r map[string]any) bool { return r["msg"] == "configuration reloaded" && r["via"] == "POST /reload" })
	assert.Equal(t, map[string]int{"web-1": 3, "web-2": 3}, web(la["http"], 6))
	assert.Equal(t, keptTarget+": after good POST", echoLine(t, kept, "after good POST"))

	// POST /reload, bad: refused with every problem, nothing changed.
	bad := strings.Replace(mustMarshal(t, f), "weight: 0", "weight: 150", 1)
	bad = strings.Replace(bad, "address: 127.0.0.1:0", "address: 127.0.0.1:70000", 1)
	require.NoError(t, os.WriteFile(cfgPath, []byte(bad), 0o600))
	code, body = reload()
	require.Equal(t, http.StatusUnprocessableEntity, code)
	problems := fmt.Sprint(body["problems"])
	assert.Contains(t, problems, `listeners[http].address: "127.0.0.1:70000": port 70000 is out of range 0..65535`)
	assert.Contains(t, problems, `target_groups[web].targets[web-3].weight: 150 is out of range 0..100`)
	rec, at = lg.wait(t, at, 10*time.Second, msg("reload refused; nothing changed"))
	assert.Equal(t, "POST /reload", rec["via"])
	assert.Equal(t, map[string]int{"web-1": 3, "web-2": 3}, web(la["http"], 6), "still web-3 at weight 0")
	assert.Equal(t, keptTarget+": after bad POST", echoLine(t, kept, "after bad POST"))

	// SIGHUP, good: web-3 back at weight 2, and a new listener.
	*f.TargetGroups[0].Targets[2].Weight = 2
	f.Listeners = append(f.Listeners, config.Listener{Name: "http2", Protocol: "http", Address: "127.0.0.1:0", ForwardTo: "web"})
	write(t, cfgPath, f)
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	_, at = lg.wait(t, at, 10*time.Second, func(r map[string]any) bool { return r["msg"] == "configuration reloaded" && r["via"] == "SIGHUP" })
	la = addrs()
	require.Contains(t, la, "http2")
	assert.Equal(t, map[string]int{"web-1": 2, "web-2": 2, "web-3": 4}, web(la["http2"], 8))
	assert.Equal(t, keptTarget+": after good SIGHUP", echoLine(t, kept, "after good SIGHUP"))

	// SIGHUP, bad: logged with every problem, nothing changed.
	require.NoError(t, os.WriteFile(cfgPath, []byte("listeners:\n  - name: http\n    protocl: http\n"), 0o600))
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	rec, at = lg.wait(t, at, 10*time.Second, msg("reload refused; nothing changed"))
	assert.Equal(t, "SIGHUP", rec["via"])
	assert.Contains(t, fmt.Sprint(rec["problems"]), `listeners[http].protocl: unknown field; did you mean "protocol"? (line 3)`)
	assert.Equal(t, map[string]int{"web-1": 1, "web-2": 1, "web-3": 2}, web(la["http2"], 4))
	assert.Equal(t, keptTarget+": after bad SIGHUP", echoLine(t, kept, "after bad SIGHUP"))
	kept.Close()

	// SIGTERM with a request in flight: it finishes; new clients are
	// refused; lbd exits 0.
	held := make(chan string, 1)
	go func() {
		resp, err := client.Get("http://" + la["http"] + "/hold")
		if err != nil {
			held <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		held <- fmt.Sprint(resp.StatusCode, " ", strings.TrimSpace(string(b)))
	}()
	<-hold // the request reached a target
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	_, at = lg.wait(t, at, 10*time.Second, msg("shutting down"))
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", la["http2"], time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, 10*time.Second, 20*time.Millisecond, "listeners stop accepting at once")
	close(release)
	assert.Regexp(t, `^200 web-\d$`, <-held, "the request in flight finished")
	// Idle keep-alive connections are given until their idle timeout (or
	// the shutdown timeout) to close; this client closes its own.
	client.CloseIdleConnections()
	lg.wait(t, at, 20*time.Second, msg("stopped"))
	<-readDone
	err = cmd.Wait()
	exited = true
	require.NoError(t, err, "lbd exits 0 after a graceful stop")
	assert.NotContains(t, lg.String(), "DATA RACE")
}

// build compiles lbd into dir, with -race when the test runs with it.
func build(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "lbd")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command(goTool(), append(args, ".")...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

func mustMarshal(t *testing.T, f *config.File) string {
	b, err := yaml.Marshal(f)
	require.NoError(t, err)
	return string(b)
}

// echoLine sends a line on c and returns the echoed line.
func echoLine(t *testing.T, c net.Conn, line string) string {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err := fmt.Fprintln(c, line)
	require.NoError(t, err)
	got, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	return strings.TrimSpace(got)
}

// echoUDP sends a datagram from a new socket and returns the answer.
func echoUDP(t *testing.T, addr, payload string) string {
	t.Helper()
	c, err := net.Dial("udp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Write([]byte(payload))
	require.NoError(t, err)
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	require.NoError(t, err)
	return string(buf[:n])
}

// scrape reads a Prometheus text exposition with Prometheus's parser.
func scrape(t *testing.T, c *http.Client, url string) map[string]*dtoFamily {
	t.Helper()
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// value returns the value of the metric of a family with the given labels
// (a histogram's sample count).
func value(t *testing.T, fams map[string]*dtoFamily, name string, labels map[string]string) float64 {
	t.Helper()
	mf, ok := fams[name]
	require.True(t, ok, "no metric family %s", name)
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		if h := m.GetHistogram(); h != nil {
			return float64(h.GetSampleCount())
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}
