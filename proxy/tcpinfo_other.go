//go:build !linux

package proxy

import (
	"errors"
	"net"
)

// tcpActivityOf is Linux's TCP_INFO; elsewhere the flow table cannot learn
// a spliced connection's activity, and tcpFlow.idle keeps such flows.
func tcpActivityOf(*net.TCPConn) (tcpActivity, error) {
	return tcpActivity{}, errors.ErrUnsupported
}
