//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package proxy

import (
	"net"
	"sync"
)

// smallReader is not used here: copySmall reads with Read, holding its
// buffer while it waits.
type smallReader struct{}

func newSmallReader(net.Conn, *sync.Pool) *smallReader { return nil }

func (*smallReader) next() (*[smallCopyBuf]byte, int, error) { panic("unreachable") }
