package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// records reads a JSON-lines log file back; a missing file has none.
func records(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var rs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), "%s: %q", path, line)
		rs = append(rs, m)
	}
	return rs
}

// waitRecords waits until the file holds n records and returns them.
func waitRecords(t *testing.T, path string, n int) []map[string]any {
	t.Helper()
	require.Eventually(t, func() bool { return len(records(t, path)) >= n }, 10*time.Second, 5*time.Millisecond, "%d records in %s", n, path)
	return records(t, path)
}

// TestLogsToFilesReopened: the access log and the flow log go to files of
// their own, each record parsed back field by field; after logrotate's
// rename, SIGUSR1 makes lbd write to new files.
func TestLogsToFilesReopened(t *testing.T) {
	bin := lbdBinary(t)
	dir := t.TempDir()
	ts := newTargets(t)
	cfg := ts.config(t, dir)
	b, err := os.ReadFile(cfg)
	require.NoError(t, err)
	y := strings.Replace(string(b), "forward_to: echo}", "forward_to: echo, flow_log: true}", 1)
	y = strings.Replace(y, "forward_to: dns}", "forward_to: dns, flow_log: true}", 1)
	require.NoError(t, os.WriteFile(cfg, []byte(y), 0o600))
	access, flows := filepath.Join(dir, "access.log"), filepath.Join(dir, "flow.log")
	p := startLBD(t, bin, nil, "run", "-config", cfg, "-admin", "127.0.0.1:0", "-access-log", access, "-flow-log", flows)
	la := listenerAddrs(t, p.admin)
	waitServing(t, p.admin, "web", 2)
	waitServing(t, p.admin, "echo", 2)

	request := func(path string) {
		t.Helper()
		req, err := http.NewRequest("GET", "http://"+la["http"]+path, nil)
		require.NoError(t, err)
		req.Header.Set("User-Agent", "logs-test/2")
		req.Header.Set("Referer", "http://referer.example/")
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode, "%s", body)
	}
	talk := func() string {
		t.Helper()
		c, err := net.Dial("tcp", la["tcp"])
		require.NoError(t, err)
		require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
		_, err = fmt.Fprintln(c, "hello")
		require.NoError(t, err)
		line, err := bufio.NewReader(c).ReadString('\n')
		require.NoError(t, err)
		client := c.LocalAddr().String()
		c.Close()
		return client + " " + line
	}

	request("/a/b?x=1&y=two")
	r := waitRecords(t, access, 1)[0]
	assert.Equal(t, "http", r["msg"])
	assert.Equal(t, "GET", r["method"])
	assert.Equal(t, "/a/b", r["path"])
	assert.Equal(t, "x=1&y=two", r["query"])
	assert.Equal(t, "logs-test/2", r["user_agent"])
	assert.Equal(t, "http://referer.example/", r["referer"])
	assert.Regexp(t, `^[0-9a-f]{32}$`, r["request_id"], "access_log turns request IDs on")
	assert.EqualValues(t, 200, r["status"])
	assert.EqualValues(t, 6, r["bytes_out"], `"web-N\n"`)
	assert.EqualValues(t, 0, r["bytes_in"])
	assert.Equal(t, "web", r["group"])

	got := talk()
	client, answer, _ := strings.Cut(got, " ")
	f := waitRecords(t, flows, 1)[0]
	assert.Equal(t, "flow", f["msg"])
	assert.Equal(t, "tcp", f["proto"])
	assert.Equal(t, "tcp", f["listener"])
	assert.Equal(t, "echo", f["group"])
	assert.Equal(t, client, f["client"])
	assert.Contains(t, []any{"echo-1", "echo-2"}, f["target_id"])
	assert.Equal(t, ts.tcp[f["target_id"].(string)], f["target"])
	assert.EqualValues(t, len("hello\n"), f["bytes_in"])
	assert.EqualValues(t, len(answer), f["bytes_out"])
	assert.Equal(t, "client_close", f["reason"])
	assert.Regexp(t, `^\d+\.\d{3}$`, f["duration"])

	// logrotate: rename, then SIGUSR1.
	require.NoError(t, os.Rename(access, access+".1"))
	require.NoError(t, os.Rename(flows, flows+".1"))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGUSR1))
	require.Eventually(t, func() bool {
		_, e1 := os.Stat(access)
		_, e2 := os.Stat(flows)
		return e1 == nil && e2 == nil
	}, 10*time.Second, 5*time.Millisecond, "new log files after SIGUSR1")
	request("/after")
	talk()
	assert.Equal(t, "/after", waitRecords(t, access, 1)[0]["path"])
	assert.Equal(t, "client_close", waitRecords(t, flows, 1)[0]["reason"])
	assert.Len(t, records(t, access+".1"), 1, "nothing more in the rotated access log")
	assert.Len(t, records(t, flows+".1"), 1, "nothing more in the rotated flow log")
}
