// Package h2raw is a raw HTTP/2 client for tests: it sends the frames a
// well-behaved client would not (a stream reset right after its headers,
// DATA shorter than the Content-Length, connection-specific fields) and
// reads what the server answers, frame by frame. It is imported by tests
// only.
package h2raw
