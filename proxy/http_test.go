package proxy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHTTPForward(t *testing.T) {
	a := newTarget(t, "a", nil)
	up := upstreamOf(t, "web", a)
	rt, err := Forward(up)
	require.NoError(t, err)
	addr := serve(t, &HTTP{Router: rt})
	code, body := get(t, client(t), "http://"+addr+"/x?y=1")
	assert.Equal(t, 200, code)
	assert.Equal(t, "a", body)
	last := a.lastRequest()
	assert.Equal(t, "127.0.0.1", last.Header.Get("X-Forwarded-For"))
	assert.Equal(t, "http", last.Header.Get("X-Forwarded-Proto"))
	assert.Equal(t, addr, last.Header.Get("X-Forwarded-Host"))
	assert.Equal(t, "/x?y=1", last.RequestURI)
}
