package apiservertest

import (
	"os"
	"testing"
)

// TestMain runs the tests. goleak is not used here: the in-process API
// server and etcd leave goroutines of their own after they stop; the test
// checks instead that none of lbkit's and its source's is left.
func TestMain(m *testing.M) { os.Exit(m.Run()) }
