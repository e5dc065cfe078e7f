package proxy

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// tcpActivity is what the kernel says about one socket's recent traffic.
type tcpActivity struct {
	idle   time.Duration // since data last moved either way
	segsIn uint32        // segments received, data or not (keepalive probes too)
}

// tcpActivityOf reads TCP_INFO of c: the time since data was last received
// and sent (tcpi_last_data_recv, tcpi_last_data_sent, in milliseconds) and
// the count of segments received.
func tcpActivityOf(c *net.TCPConn) (tcpActivity, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return tcpActivity{}, err
	}
	var (
		info *unix.TCPInfo
		ierr error
	)
	if err := rc.Control(func(fd uintptr) {
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.SOL_TCP, unix.TCP_INFO)
	}); err != nil {
		return tcpActivity{}, err
	}
	if ierr != nil {
		return tcpActivity{}, ierr
	}
	ms := min(info.Last_data_recv, info.Last_data_sent)
	return tcpActivity{idle: time.Duration(ms) * time.Millisecond, segsIn: info.Segs_in}, nil
}
