package healthcheck

import (
	"context"
	"net"
)

// TCP checks that a TCP connection to the target opens within the timeout,
// then closes it. It sends nothing.
//
// TCP is a plain struct because it has nothing to build or release: the
// zero TCP probes the traffic port and is ready to use.
type TCP struct {
	// Port is the port to probe; 0 means the target's traffic port. Set it
	// to check a service on its health port, e.g. a UDP service whose TCP
	// health endpoint listens elsewhere.
	Port int

	// ResetOnClose closes each probe connection with a TCP reset
	// (SO_LINGER 0) instead of a FIN, as HAProxy's checks do. The checking
	// host then keeps no TIME_WAIT entry per check, which matters with
	// thousands of targets at short intervals; the target's application may
	// see a reset connection if it accepted it. Default false: a normal
	// close.
	ResetOnClose bool
}

// Check dials the target (or Port) and closes the connection. The timeout
// is ctx's (DefaultTimeout if ctx has no deadline). Failures read like
// "connection refused" or "timeout after 3s".
func (c TCP) Check(ctx context.Context, t Target) error {
	_, addr, err := checkAddr(t, c.Port)
	if err != nil {
		return err
	}
	ctx, cancel, b := budget(ctx)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fail(err, b)
	}
	if tc, ok := conn.(*net.TCPConn); ok && c.ResetOnClose {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
	return nil
}
