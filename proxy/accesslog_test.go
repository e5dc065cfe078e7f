package proxy

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAccessLogFields parses the access log back field by field, for a
// request with a query, a body, a user agent, a referer and an
// X-Request-Id, over HTTP/1.1, HTTP/1.1 in TLS and HTTP/2: what the client
// sent, what the target got (its X-Request-Id) and what the log says agree.
func TestAccessLogFields(t *testing.T) {
	ca := newCA(t)
	var certs Certificates
	require.NoError(t, certs.Set(WildcardOneLabel, ca.issue(t, false, "x.example.com")))
	const answer = "a 21-byte answer body"
	tg := newTarget(t, "a", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, answer)
	})
	hexID := regexp.MustCompile(`^[0-9a-f]{32}$`)

	for _, tc := range []struct {
		name      string
		tls, h2   bool
		requestID bool
		trusted   bool
	}{
		{name: "http1 generated id", requestID: true},
		{name: "http1 trusted id", requestID: true, trusted: true},
		{name: "http1 ids off"},
		{name: "https1 generated id", tls: true, requestID: true},
		{name: "h2 trusted id", tls: true, h2: true, requestID: true, trusted: true},
		{name: "h2 generated id", tls: true, h2: true, requestID: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs logBuffer
			h := &HTTP{AccessLog: logs.logger(), RequestID: tc.requestID}
			scheme := "http"
			if tc.tls {
				h.TLS = &TLS{Certificates: &certs}
				scheme = "https"
			}
			h = configured(t, h, forwardTo(t, upstreamOf(t, "web", tg)))
			if tc.trusted {
				h.SetTrustedProxies(loopbackACL(t))
			}
			addr := serve(t, h)

			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool, ServerName: "x.example.com"}}
			if tc.h2 {
				tr.ForceAttemptHTTP2 = true
			} else {
				tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
			}
			defer tr.CloseIdleConnections()
			req, err := http.NewRequest("POST", scheme+"://"+addr+"/p/q?a=1&b=x%20y", strings.NewReader("twelve bytes"))
			require.NoError(t, err)
			req.Host = "x.example.com"
			req.Header.Set("User-Agent", "lbkit-test/1.0 (field check)")
			req.Header.Set("Referer", "https://ref.example/page")
			req.Header.Set("X-Request-Id", "client-chosen-7")
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, answer, string(body))

			m := lastLog(t, h, &logs)
			assert.Equal(t, "POST", m["method"])
			assert.Equal(t, "/p/q", m["path"])
			assert.Equal(t, "a=1&b=x%20y", m["query"])
			assert.Equal(t, "lbkit-test/1.0 (field check)", m["user_agent"])
			assert.Equal(t, "https://ref.example/page", m["referer"])
			assert.EqualValues(t, len("twelve bytes"), m["bytes_in"])
			assert.EqualValues(t, len(answer), m["bytes_out"])
			assert.EqualValues(t, 200, m["status"])
			got := tg.lastRequest().Header.Get("X-Request-Id")
			switch {
			case !tc.requestID:
				assert.Equal(t, "client-chosen-7", m["request_id"], "logged as it came")
				assert.Equal(t, "client-chosen-7", got, "passed through untouched")
			case tc.trusted:
				assert.Equal(t, "client-chosen-7", m["request_id"], "a trusted peer's id is kept")
				assert.Equal(t, "client-chosen-7", got)
			default:
				assert.Regexp(t, hexID, m["request_id"], "an untrusted client's id is replaced")
				assert.Equal(t, m["request_id"], got, "the target gets the logged id")
			}
			if tc.tls {
				require.NotNil(t, resp.TLS)
				assert.Equal(t, tls.VersionName(resp.TLS.Version), m["tls_version"])
				assert.Equal(t, tls.CipherSuiteName(resp.TLS.CipherSuite), m["tls_cipher"])
				assert.Equal(t, "x.example.com", m["sni"])
				if tc.h2 {
					assert.Equal(t, "HTTP/2.0", m["proto"])
				}
			} else {
				assert.NotContains(t, m, "tls_cipher")
			}
		})
	}
}

// TestRequestIDs: generated IDs differ, and a trusted peer's invalid
// X-Request-Id (too long, or with spaces or control characters) is
// replaced.
func TestRequestIDs(t *testing.T) {
	assert.True(t, validRequestID("abc-123_x.Y:z"))
	assert.False(t, validRequestID(""))
	assert.False(t, validRequestID("has space"))
	assert.False(t, validRequestID("ctl\x01"))
	assert.False(t, validRequestID(strings.Repeat("a", 129)))
	assert.True(t, validRequestID(strings.Repeat("a", 128)))

	h := &HTTP{RequestID: true}
	h.SetTrustedProxies(loopbackACL(t))
	seen := map[string]bool{}
	for range 1000 {
		ex := &exchange{h: h, peer: netip.MustParseAddrPort("127.0.0.1:5"), xrid: "bad id"}
		id := strings.Clone(ex.requestID())
		assert.Len(t, id, 32)
		assert.False(t, seen[id], "IDs repeat")
		seen[id] = true
	}
}

// loopbackACL allows 127.0.0.0/8.
func loopbackACL(t testing.TB) *ACL {
	a, err := NewACL([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil)
	require.NoError(t, err)
	return a
}
