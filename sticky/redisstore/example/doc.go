// Command example runs two lbkit nodes that share their sticky sessions
// through one Redis: a client keeps its target whichever node it reaches,
// and keeps it on each node it has met when Redis goes away.
//
//	go run . -redis 127.0.0.1:6379
//
// See docs/guides/shared-sticky-sessions.md.
package main
