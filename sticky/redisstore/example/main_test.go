package main

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/sticky/redisstore/redistest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) {
	r := redistest.Start(t)
	var out bytes.Buffer
	require.NoError(t, run(&out, r.Addr, r.Kill))
	t.Log("\n" + out.String())
	// Each client meets one target on both nodes, before and after Redis goes.
	same := regexp.MustCompile(`(?m)^client 127\.0\.0\.1[12]: node 0 → (\w), node 1 → (\w), node 0 → (\w), node 1 → (\w)$`)
	ms := same.FindAllStringSubmatch(out.String(), -1)
	require.Len(t, ms, 2)
	for _, m := range ms {
		assert.Equal(t, []string{m[1], m[1], m[1], m[1]}, m[1:], "one target whichever node")
	}
	assert.Regexp(t, `Redis gone, client 127\.0\.0\.11: node 0 → `+ms[0][1]+`, node 1 → `+ms[0][1]+`\n`, out.String())
	assert.Contains(t, out.String(), "store errors counted: true")
}
