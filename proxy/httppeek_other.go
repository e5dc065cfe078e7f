//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package proxy

import "errors"

// canMerge is false here: requests are written and answers read through
// the connection, one call each.
const canMerge = false

// peek cannot look at an idle connection without blocking here: it is
// taken as open, and a request that fails on it before any byte of the
// answer is sent again on a new connection (see pool).
func (c *tconn) peek(uintptr) { c.alive = true }

func peekQuiet(uintptr, []byte) bool { return true }

func writeFD(uintptr, []byte, int) (int, bool, error) {
	return 0, false, errors.New("not supported")
}

func readFD(uintptr, []byte) (int, bool, error) { return 0, false, errors.New("not supported") }

func peekState(uintptr, []byte) (bool, bool) { return true, false }
