package proxy

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the package's tests, with every HTTP proxy's EventLoop on
// when LBKIT_TEST_EVENTLOOP=1 (scripts/test-all runs them both ways).
func TestMain(m *testing.M) {
	testEventLoop = os.Getenv("LBKIT_TEST_EVENTLOOP") == "1"
	goleak.VerifyTestMain(m)
}
