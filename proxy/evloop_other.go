//go:build !linux

package proxy

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/lbkit/lbkit/proxy/internal/h1"
)

// evloops is the event-loop front end, Linux only: elsewhere HTTP.EventLoop
// serves every connection with the engine's goroutines.
type evloops struct {
	dials atomic.Int64
}

func (*evloops) idleConns() int64 { return 0 }

func startLoops(*HTTP, int) (*evloops, error) {
	return nil, errors.New("proxy: event loops need Linux")
}

func (*evloops) stop()                                                  {}
func (*evloops) closeConns(bool)                                        {}
func (*evloops) adopt(net.Conn, netip.AddrPort, string, *Timeouts) bool { return false }

// lclient is an event loop's client connection (Linux only).
type lclient struct{ gone bool }

func (*lclient) answer(*exchange, int, string)            {}
func (*lclient) respond(*exchange, int, []string, string) {}
func (*lclient) write1xx(*exchange, *h1.Response)         {}
