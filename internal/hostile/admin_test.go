package hostile

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/admin"
	"github.com/lbkit/lbkit/lb"
)

// TestAdminCrossSite attacks the admin endpoint from a browser's position:
// a hostile page's cross-site form POST to /reload is refused and reloads
// nothing; a page on a name rebound to the admin address (DNS rebinding)
// cannot read /stats; with a token configured, a POST without it is
// refused. A tool's plain POST on loopback works.
func TestAdminCrossSite(t *testing.T) {
	l, err := lb.New(lb.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	var reloads atomic.Int64
	serveAdmin := func(opts ...admin.Option) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		h := admin.New(l, append([]admin.Option{admin.WithLogger(slog.New(slog.DiscardHandler)),
			admin.WithReload(func(context.Context) error { reloads.Add(1); return nil })}, opts...)...)
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Serve(ln) }()
		t.Cleanup(func() { srv.Close(); <-done })
		return ln.Addr().String()
	}
	do := func(method, url string, hdr ...string) int {
		req, err := http.NewRequest(method, url, strings.NewReader("a=b"))
		require.NoError(t, err)
		for i := 0; i+1 < len(hdr); i += 2 {
			if hdr[i] == "Host" {
				req.Host = hdr[i+1]
				continue
			}
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	addr := serveAdmin()
	form := []string{"Content-Type", "application/x-www-form-urlencoded"}
	assert.Equal(t, 403, do("POST", "http://"+addr+"/reload", append(form, "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site")...), "a cross-site form post")
	assert.Equal(t, 403, do("POST", "http://"+addr+"/reload", append(form, "Origin", "http://evil.example")...), "cross-site by Origin alone")
	assert.Equal(t, 403, do("GET", "http://"+addr+"/stats", "Host", "evil.example:80"), "a rebound name")
	assert.Zero(t, reloads.Load(), "nothing reloaded")
	assert.Equal(t, 200, do("POST", "http://"+addr+"/reload"), "a tool's POST on loopback")
	assert.Equal(t, int64(1), reloads.Load())

	taddr := serveAdmin(admin.WithToken("t0ken"))
	assert.Equal(t, 401, do("POST", "http://"+taddr+"/reload"), "no token")
	assert.Equal(t, 401, do("POST", "http://"+taddr+"/reload", "Authorization", "Bearer nope"), "a wrong token")
	assert.Equal(t, 200, do("POST", "http://"+taddr+"/reload", "Authorization", "Bearer t0ken"))
	assert.Equal(t, int64(2), reloads.Load())
}
