package admin_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/lbkit/lbkit/admin"
	"github.com/lbkit/lbkit/internal/chromium"
	"github.com/lbkit/lbkit/lb"
)

const chromiumPath = chromium.Path

// TestStatusPageShowsTroubleFirst opens the status page in headless
// Chromium at 1280×800 and checks what a person sees before scrolling: a
// summary in amber saying the group is degraded and how many targets
// serve, the failing group, and the failing target's row in red with the
// reason; a draining target in amber, not red; the link to /metrics.
func TestStatusPageShowsTroubleFirst(t *testing.T) {
	if err := chromium.Available(); err != nil {
		t.Skipf("headless Chromium is needed (Debian package chromium): %v", err)
	}
	f := newFixture(t)
	// A second group, all healthy, whose name sorts first: it must not
	// push the trouble down.
	require.NoError(t, f.lb.AddTargetGroup("aaa-fine", lb.HTTP, lb.WithTarget(f.up.Listener.Addr().String(), lb.WithTargetID("fine")), lb.WithoutHealthCheck()))
	require.NoError(t, f.lb.AddListener("fine", lb.HTTP, "127.0.0.1:0", lb.WithForwardTo("aaa-fine")))
	require.NoError(t, f.lb.AddTarget("app", f.up.Listener.Addr().String(), lb.WithTargetID("drained"), lb.WithWeight(0)))
	srv := httptest.NewServer(admin.New(f.lb, admin.WithTitle("lbkit test"),
		admin.WithMetrics(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const width, height = 1280, 800
	b, err := chromium.Start(ctx, t.TempDir(), width, height)
	require.NoError(t, err)
	defer b.Close()
	require.NoError(t, b.Navigate(ctx, srv.URL+"/?refresh=0"))

	top, err := b.VisibleText(ctx, "#headline, #summary li, h2, tr, a", height)
	require.NoError(t, err)
	var seen []string
	for _, e := range top {
		seen = append(seen, e.Text)
	}
	all := strings.Join(seen, "\n")
	require.NotEmpty(t, top)
	assert.Equal(t, "Degraded: 1 group has failing targets; traffic still flows", top[0].Text, "the headline comes first")
	assert.Equal(t, "rgb(138, 90, 0)", top[0].Color, "in amber: traffic flows, but not to every target")
	assert.Contains(t, all, "Group app: 1 of 3 targets serving, 1 draining or at weight 0, 1 failing", "the summary counts")
	var groups []string
	rows := map[string]chromium.Element{}
	for _, e := range top {
		if strings.HasPrefix(e.Text, "Target group ") {
			groups = append(groups, e.Text)
		}
		if fields := strings.Fields(e.Text); len(fields) > 0 && e.Class != "" {
			rows[fields[0]] = e
		}
	}
	require.NotEmpty(t, groups, "a group heading is visible without scrolling:\n%s", all)
	assert.True(t, strings.HasPrefix(groups[0], "Target group app: 1 of 3 serving"), "the group in trouble first: %q", groups)
	require.Contains(t, rows, "down", "the failing target's row is visible without scrolling:\n%s", all)
	assert.Equal(t, "row-bad", rows["down"].Class)
	assert.Contains(t, rows["down"].Text, "connection refused")
	require.Contains(t, rows, "drained")
	assert.Equal(t, "row-warn", rows["drained"].Class, "a deliberate drain is amber, not red")
	assert.Contains(t, all, "/metrics", "a link to the metrics")
	// LBKIT_SCREENSHOTS=dir keeps the screenshot, to look at.
	require.NoError(t, b.Screenshot(ctx, filepath.Join(cmp.Or(os.Getenv("LBKIT_SCREENSHOTS"), t.TempDir()), "status.png")))
}

// TestStatusPageInChromium opens the status page in headless Chromium and
// checks what a person would see: each target's name, weight, health, the
// reason in words and whether it serves.
func TestStatusPageInChromium(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("headless Chromium is needed (Debian package chromium, %s): %v", chromiumPath, err)
	}
	f := newFixture(t)
	srv := httptest.NewServer(admin.New(f.lb, admin.WithTitle("lbkit test")))
	defer srv.Close()

	dom := dumpDOM(t, srv.URL+"/")
	doc, err := html.Parse(strings.NewReader(dom))
	require.NoError(t, err)

	assert.Equal(t, "lbkit test status", text(find(doc, "title")))
	assert.Equal(t, "Degraded: 1 group has failing targets; traffic still flows", text(byID(doc, "headline")),
		"a group with a failing target is not OK")
	rows := map[string][]string{} // target ID → the cells of its row, as shown
	for _, table := range findAll(doc, "table") {
		if attr(table, "class") != "targets" {
			continue
		}
		for i, tr := range findAll(table, "tr") {
			if i == 0 {
				continue // the header
			}
			var cells []string
			for _, td := range findAll(tr, "td") {
				cells = append(cells, text(td))
			}
			rows[cells[0]] = cells
		}
	}
	require.Len(t, rows, 2, "the page shows both targets: %q", dom)
	// Columns: Target, Address, Weight, Health, Reason, State, Active
	// connections, Active requests, Requests, Last checks.
	down := rows["down"]
	assert.Equal(t, []string{"down", f.down, "1", "unhealthy", "connection refused", "not serving"}, down[:6])
	assert.Contains(t, down[9], "connection refused", "the last checks say why")
	up := rows["up"]
	assert.Equal(t, []string{"up", f.up.Listener.Addr().String(), "3", "healthy"}, up[:4])
	assert.Equal(t, "serving", up[5])

	listeners := findAll(byID(doc, "listeners"), "td")
	require.NotEmpty(t, listeners)
	assert.Equal(t, "web", text(listeners[0]))
	assert.Equal(t, f.web, text(listeners[2]))
}

// dumpDOM runs headless Chromium on url and returns the DOM it built. The
// run is bounded; Chromium's whole process group is killed when it ends,
// and its profile lives in a fresh directory removed with the test.
func dumpDOM(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromiumPath,
		"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
		"--user-data-dir="+t.TempDir(), "--dump-dom", url)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if cmd.Process != nil {
		// Helpers Chromium left behind go with their group.
		if kerr := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); kerr != nil && !errors.Is(kerr, syscall.ESRCH) {
			t.Logf("killing Chromium's process group: %v", kerr)
		}
	}
	require.NoError(t, err, "chromium: %s", errOut.String())
	return out.String()
}

func findAll(n *html.Node, tag string) []*html.Node {
	var out []*html.Node
	if n == nil {
		return nil
	}
	for c := range n.Descendants() {
		if c.Type == html.ElementNode && c.Data == tag {
			out = append(out, c)
		}
	}
	return out
}

func find(n *html.Node, tag string) *html.Node {
	if all := findAll(n, tag); len(all) > 0 {
		return all[0]
	}
	return nil
}

func byID(n *html.Node, id string) *html.Node {
	for c := range n.Descendants() {
		if c.Type == html.ElementNode && attr(c, "id") == id {
			return c
		}
	}
	return nil
}

func attr(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}

// text returns the text a person reads in n, spaces collapsed.
func text(n *html.Node) string {
	if n == nil {
		return ""
	}
	var b strings.Builder
	for c := range n.Descendants() {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}
