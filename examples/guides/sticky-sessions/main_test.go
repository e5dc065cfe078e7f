package main

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/lbkit/lbkit/internal/syncbuf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// line returns the targets listed after prefix on a line of the output.
func line(t *testing.T, s, prefix string) []string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(prefix) + `(.*)$`).FindStringSubmatch(s)
	require.NotNil(t, m, "no line %q in:\n%s", prefix, s)
	return strings.Fields(m[1])
}

func distinct(xs []string) int {
	set := map[string]bool{}
	for _, x := range xs {
		set[x] = true
	}
	return len(set)
}

// TestStickySessions runs the demonstration and checks what the guide says
// it shows.
func TestStickySessions(t *testing.T) {
	var out syncbuf.Buffer
	require.NoError(t, run(context.Background(), &out, false))
	s := out.String()

	noCookie := line(t, s, "no cookie, one keep-alive connection (1 dialed): ")
	assert.Len(t, noCookie, 6)
	assert.Equal(t, 3, distinct(noCookie), "keep-alive is not stickiness: %v", noCookie)

	assert.Regexp(t, `Set-Cookie: LBKIT=<\d+ opaque bytes>; Max-Age=1200\n`, s, "the default cookie name and 20-minute duration")
	first := regexp.MustCompile(`first response: target (\w+),`).FindStringSubmatch(s)
	require.NotNil(t, first, s)
	assert.Equal(t, strings.Fields(strings.Repeat(first[1]+" ", 6)), line(t, s, "with that cookie: "))

	tampered := line(t, s, "with a tampered cookie: ")
	assert.Equal(t, 3, distinct(tampered[:3]), "a tampered cookie is no cookie: %v", tampered)
	assert.Contains(t, s, "(a new cookie set: true)")

	m := regexp.MustCompile(`target (\w+) stopped: the session moved to (\w+) \(a new cookie set: true\); with the new cookie: (.*)\n`).FindStringSubmatch(s)
	require.NotNil(t, m, s)
	assert.Equal(t, first[1], m[1])
	assert.NotEqual(t, m[1], m[2])
	assert.Equal(t, strings.Fields(strings.Repeat(m[2]+" ", 3)), strings.Fields(m[3]))

	app := regexp.MustCompile(`/login answered by (\w+), Set-Cookie: JSESSIONID=(\w+-\d+)\n`).FindStringSubmatch(s)
	require.NotNil(t, app, s)
	assert.Equal(t, strings.Fields(strings.Repeat(app[1]+" ", 6)), line(t, s, "with JSESSIONID="+app[2]+": "))
	assert.Equal(t, 2, distinct(line(t, s, "with JSESSIONID=abcd (never set by a target): ")), "an invented value pins nothing")
}
