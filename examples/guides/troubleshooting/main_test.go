package main

import (
	"context"
	"testing"

	"github.com/lbkit/lbkit/internal/syncbuf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestTroubleshooting runs the walk-through and checks that each question
// gets the answer the guide quotes.
func TestTroubleshooting(t *testing.T) {
	var out syncbuf.Buffer
	require.NoError(t, run(context.Background(), &out, false))
	s := out.String()

	// 1. No listener on the port.
	assert.Regexp(t, `client sees:  dial port (\d+): connection refused\n   lbkit says:   no listener on port \d+ \(listeners: admin 127\.0\.0\.1:\d+, db 127\.0\.0\.1:\d+, dns 127\.0\.0\.1:\d+, web 127\.0\.0\.1:\d+\)\n`, s)
	// 2. Access control.
	assert.Contains(t, s, "client sees:  connection reset by peer\n   lbkit says:   listener \"admin\": client 127.0.0.1 is denied by the access control (allow 10.0.0.0/8)\n   lbkit says:   FlowRejected hook: reason acl\n")
	// 3. Not attached.
	assert.Contains(t, s, `target group "orphan": not attached to any listener: no traffic is forwarded to it`)
	// 4. Unhealthy, with the reasons.
	assert.Regexp(t, `client sees:  GET http://127\.0\.0\.1:\d+/: 503 Service Unavailable\n`, s)
	assert.Contains(t, s, `listener "web": target group "web" has no target that can receive traffic`)
	assert.Regexp(t, `target web-1: unhealthy: connection refused \(\d+ consecutive failed checks\)\n`, s)
	assert.Regexp(t, `target web-2: unhealthy: status 503, want 200 \(\d+ consecutive failed checks\)\n`, s)
	assert.Regexp(t, `target web-3: unhealthy: timeout after 400ms \(\d+ consecutive failed checks\)\n`, s)
	assert.Contains(t, s, "target web-4: weight 0: no new traffic; established connections continue\n")
	// 5. Draining.
	assert.Regexp(t, `target db-2: deregistered, draining until \d\d:\d\d:\d\d: no new traffic`, s)
	// 6. UDP: silence.
	assert.Contains(t, s, "client sees:  no answer within 500ms: i/o timeout\n")
	assert.Contains(t, s, `listener "dns": target group "dns" has no target that can receive traffic`)
	assert.Contains(t, s, "FlowRejected hook: reason no_target\n")
	// 7. Flow table full.
	assert.Contains(t, s, "client sees:  a second connection: connection reset by peer\n")
	assert.Contains(t, s, "the flow table is full (1 of 1 flows): new TCP connections and UDP flows are refused (1 so far)")
	assert.Contains(t, s, "FlowRejected hook: reason table_full\n")
	assert.Contains(t, s, "Stats().Flows.TCP: ActiveFlowCount 1, RejectedFlowCount 1\n")
	// The whole report.
	assert.Regexp(t, `(?s)The whole diagnosis.*PROBLEMS:\n  - the flow table is full`, s)
}
