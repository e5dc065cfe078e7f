package accesslog_test

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/accesslog"
)

// combinedLine is the combined log format, parsed back field by field.
var combinedLine = regexp.MustCompile(`^(\S+) (\S+) (\S+) \[([^\]]+)\] "((?:[^"\\]|\\.)*)" (\d{3}) (\d+|-) "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"$`)

func TestCombinedHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(accesslog.NewCombinedHandler(&buf)).With("listener", "web")
	at := time.Date(2026, 12, 3, 10, 42, 1, 0, time.FixedZone("", 3600))
	rec := func(attrs ...any) {
		r := slog.NewRecord(at, slog.LevelInfo, "http", 0)
		r.Add(attrs...)
		require.NoError(t, log.Handler().Handle(context.Background(), r))
	}
	rec("client", "192.0.2.1:5555", "client_ip", "203.0.113.9", "method", "GET", "path", "/search", "query", "q=go&x=1",
		"proto", "HTTP/1.1", "status", 200, "bytes_out", int64(5120), "referer", "https://example.com/", "user_agent", `curl/8.5.0 "quoted" \ `+"\x01")
	rec("client", "[2001:db8::1]:5555", "method", "POST", "path", "/x", "proto", "HTTP/2.0", "status", 503, "bytes_out", int64(0))
	log.Info("flow", "client", "192.0.2.1:5555") // not an HTTP record: not written
	log.Debug("http", "status", 200)             // below Info: not written

	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	require.Len(t, lines, 2, buf.String())
	m := combinedLine.FindStringSubmatch(lines[0])
	require.NotNil(t, m, lines[0])
	assert.Equal(t, []string{"203.0.113.9", "-", "-", "03/Dec/2026:10:42:01 +0100", "GET /search?q=go&x=1 HTTP/1.1", "200", "5120", "https://example.com/", `curl/8.5.0 \"quoted\" \\ \x01`}, m[1:])
	m = combinedLine.FindStringSubmatch(lines[1])
	require.NotNil(t, m, lines[1])
	assert.Equal(t, []string{"2001:db8::1", "-", "-", "03/Dec/2026:10:42:01 +0100", "POST /x HTTP/2.0", "503", "-", "-", "-"}, m[1:],
		"the peer's host when no client_ip; - for no body, referer or user agent")
}

func TestFileReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	f, err := accesslog.Open(path)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.Write([]byte("one\n"))
	require.NoError(t, err)
	// logrotate moves the file away, then signals.
	require.NoError(t, os.Rename(path, path+".1"))
	_, err = f.Write([]byte("two\n"))
	require.NoError(t, err)
	require.NoError(t, f.Reopen())
	_, err = f.Write([]byte("three\n"))
	require.NoError(t, err)
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	assert.Equal(t, "one\ntwo\n", string(old), "writes before the reopen go to the moved file")
	assert.Equal(t, "three\n", string(cur), "after it, to a new file of the name")
	require.NoError(t, f.Close())
	_, err = f.Write([]byte("four\n"))
	assert.ErrorIs(t, err, os.ErrClosed)

	_, err = accesslog.Open(filepath.Join(dir, "missing", "x.log"))
	assert.Error(t, err)
}

func TestSampler(t *testing.T) {
	var buf bytes.Buffer
	draws := []float64{0.5, 0.005, 0.9, 0.001}
	s := &accesslog.Sampler{
		Handler: slog.NewJSONHandler(&buf, nil),
		Rate:    0.01,
		Rand: func() float64 {
			d := draws[0]
			draws = draws[1:]
			return d
		},
	}
	log := slog.New(s)
	log.Info("http", "status", 200)                  // draw 0.5: dropped
	log.Info("http", "status", 200)                  // draw 0.005: kept
	log.Info("http", "status", 502)                  // 5xx: always kept, no draw
	log.Info("flow", "reason", "refused_table_full") // always kept
	log.Info("flow", "reason", "client_close")       // draw 0.9: dropped
	log.Info("http", "status", 404, "error", "boom") // error: kept
	log.Info("flow", "reason", "idle_timeout")       // draw 0.001: kept
	var got []string
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		got = append(got, regexp.MustCompile(`"(status|reason)":("?[^,}]*"?)`).FindString(sc.Text()))
	}
	assert.Equal(t, []string{`"status":200`, `"status":502`, `"reason":"refused_table_full"`, `"status":404`, `"reason":"idle_timeout"`}, got)
	assert.Empty(t, draws, "one draw per ordinary record")
}
