package proxy

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// tcpActivityOf reads TCP_INFO of c: the time since data was last received
// and sent (tcpi_last_data_recv, tcpi_last_data_sent, in milliseconds), the
// segments received without data and the data segments sent.
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
	return tcpActivity{
		idle:       time.Duration(ms) * time.Millisecond,
		bareIn:     info.Segs_in - info.Data_segs_in,
		dataSegOut: info.Data_segs_out,
	}, nil
}
