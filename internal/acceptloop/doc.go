// Package acceptloop keeps accept loops alive. It is shared by the lb
// package's listening sockets and by the standalone proxies (proxy.TCP.Serve,
// proxy.HTTP.Serve), so that all of them treat accept errors alike.
//
// A Listener wraps a net.Listener. Its Accept returns the next connection
// and never an error, except once the listener is closed: every other error
// (out of descriptors: EMFILE, ENFILE; out of memory or buffers: ENOMEM,
// ENOBUFS; a connection aborted in the backlog: ECONNABORTED; anything
// else) is retried after a back-off, as net/http's server does (5 ms,
// doubling to 1 s), and accepting resumes by itself as soon as the resource
// returns. An accept loop built on it therefore ends only when its owner
// closes it.
//
// A run of errors is an episode. It is logged twice, never per error: a
// warning when it starts (with the error) and an info line when accepting
// resumes (with how long it lasted and how many errors it counted). Errors
// and the start of the current episode are counted in Counters, which the
// owner reads for its Stats and its diagnosis. An episode ends with the
// first accept that does not fail: a connection, or, on a listener that
// takes deadlines (*net.TCPListener), an accept that waited 1 ms for a
// client without an error, so that the end of an episode is seen even when
// no client comes.
//
//	ln := acceptloop.New(tcpListener, acceptloop.Config{Attrs: []any{"listener", "web"}})
//	for {
//		c, err := ln.Accept()
//		if err != nil {
//			return err // closed: the only way out
//		}
//		go serve(c)
//	}
package acceptloop
