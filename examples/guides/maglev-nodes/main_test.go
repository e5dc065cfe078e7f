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

// row is one client's line of a table.
type row struct{ client, a, b, note string }

// tableRows parses the table printed under title.
func tableRows(t *testing.T, s, title string) []row {
	t.Helper()
	i := strings.Index(s, title+":\n")
	require.GreaterOrEqual(t, i, 0, "no table %q in:\n%s", title, s)
	var rows []row
	re := regexp.MustCompile(`^  (192\.0\.2\.\d+) +(t\d) +(t\d)(?: +(.*))?$`)
	for _, l := range strings.Split(s[i:], "\n")[2:] {
		m := re.FindStringSubmatch(l)
		if m == nil {
			break
		}
		rows = append(rows, row{m[1], m[2], m[3], m[4]})
	}
	require.Len(t, rows, clients)
	return rows
}

// TestMaglevNodes runs the demonstration and checks what the guide says it
// shows: two nodes agree on every client; a target going down moves its
// clients only, to the same new target on both nodes; they come back when
// it recovers.
func TestMaglevNodes(t *testing.T) {
	var out syncbuf.Buffer
	require.NoError(t, run(context.Background(), &out, false))
	s := out.String()

	first := tableRows(t, s, "every target healthy")
	used := map[string]bool{}
	for _, r := range first {
		assert.Equal(t, r.a, r.b, "client %s", r.client)
		used[r.a] = true
	}
	assert.Greater(t, len(used), 1, "clients spread over several targets")
	require.True(t, used["t2"], "the demonstration needs a client on t2: %s", s)

	down := tableRows(t, s, "t2 down")
	for i, r := range down {
		assert.Equal(t, r.a, r.b, "client %s: the nodes agree on the new target", r.client)
		assert.NotEqual(t, "t2", r.a)
		if first[i].a == "t2" {
			assert.Equal(t, "moved from t2", r.note)
		} else {
			assert.Equal(t, first[i].a, r.a, "client %s was not on t2 and must not move", r.client)
			assert.Empty(t, r.note)
		}
	}

	back := tableRows(t, s, "t2 back")
	for i, r := range back {
		assert.Equal(t, first[i].a, r.a, "client %s is back on its first target", r.client)
		assert.Equal(t, r.a, r.b)
	}
	assert.Contains(t, s, "the nodes agree on 12 of 12 clients; 0 on another target than in the first table")
}
