//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestProxiesKeepAliveRequests: requests on kept-alive client connections
// reach both targets round robin, with X-Forwarded-For, and the answers
// come back whole; stop closes every loop.
func TestProxiesKeepAliveRequests(t *testing.T) {
	var targets []string
	for _, id := range []string{"a", "b"} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s %s", id, r.URL.Path, r.Header.Get("X-Forwarded-For"))
		}))
		defer ts.Close()
		targets = append(targets, strings.TrimPrefix(ts.URL, "http://"))
	}
	p, err := start("127.0.0.1:0", strings.Join(targets, ","), 2)
	require.NoError(t, err)
	defer p.stop()

	seen := map[string]int{}
	for range 3 {
		c, err := net.Dial("tcp", p.addr.String())
		require.NoError(t, err)
		br := bufio.NewReader(c)
		for i := range 4 {
			_, err := fmt.Fprintf(c, "GET /r%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
			require.NoError(t, err)
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			id, rest, _ := strings.Cut(string(b), " ")
			assert.Equal(t, fmt.Sprintf("/r%d 127.0.0.1", i), rest)
			seen[id]++
		}
		c.Close()
	}
	assert.Equal(t, map[string]int{"a": 6, "b": 6}, seen)
}

// TestRefusesWhatItCannotServe: addresses other than loopback are refused.
func TestRefusesWhatItCannotServe(t *testing.T) {
	_, err := start("0.0.0.0:0", "127.0.0.1:1", 1)
	assert.Error(t, err)
	_, err = start("127.0.0.1:0", "192.0.2.1:80", 1)
	assert.Error(t, err)
}
