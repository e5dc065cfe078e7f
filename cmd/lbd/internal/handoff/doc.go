// Package handoff hands a process's listening sockets to a new process of
// the same program, so that a binary upgrade refuses no client: the new
// process starts with the sockets already open, serves them, says it is
// ready, and only then does the old one stop accepting and drain.
//
// It does what github.com/cloudflare/tableflip does, with one difference
// that a load balancer needs: tableflip keeps a duplicate of every socket
// it has handed out until the process exits and has no way to drop one, so
// a listener that a reload removes would keep its port open (TCP handshakes
// completing into a backlog that nobody reads, a UDP port still bound and
// not free to be bound again). Here the registry holds the sockets
// themselves, no duplicate, and an upgrade passes exactly the ones still
// open at that moment.
//
// The protocol between the two processes: the old one starts the program's
// executable again with the same arguments, the sockets as extra files
// (descriptors 3, 4, …) named in the LBD_HANDOFF environment variable, the
// write end of a pipe on which the new process writes "ready\n", and the
// read end of a pipe that the old process never closes, so that the new
// one sees it end when the old one has exited.
package handoff
