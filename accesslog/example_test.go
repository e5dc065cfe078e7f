package accesslog_test

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/lbkit/lbkit/accesslog"
)

// The combined log format, as goaccess reads it, from an access record as
// lbkit's HTTP listeners log it.
func ExampleNewCombinedHandler() {
	log := slog.New(accesslog.NewCombinedHandler(os.Stdout))
	r := slog.NewRecord(time.Date(2026, 12, 3, 10, 42, 1, 0, time.UTC), slog.LevelInfo, "http", 0)
	r.Add("client_ip", "203.0.113.9", "method", "GET", "path", "/search", "query", "q=go",
		"proto", "HTTP/1.1", "status", 200, "bytes_out", 5120, "user_agent", "curl/8.5.0")
	_ = log.Handler().Handle(context.Background(), r)
	// Output:
	// 203.0.113.9 - - [03/Dec/2026:10:42:01 +0000] "GET /search?q=go HTTP/1.1" 200 5120 "-" "curl/8.5.0"
}

// One request in a hundred, and every error, to a file logrotate rotates.
func ExampleSampler() {
	f, err := accesslog.Open(os.DevNull)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	logger := slog.New(&accesslog.Sampler{Handler: slog.NewJSONHandler(f, nil), Rate: 0.01})
	logger.Info("http", "status", 200) // logged one time in a hundred
	logger.Info("http", "status", 503) // always logged
	// On SIGUSR1: f.Reopen()
}
