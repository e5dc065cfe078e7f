// Package redistest starts a real redis-server for tests: on a free
// loopback port, without persistence, stopped when the test ends. Tests of
// lbkit's Redis store and of programs that use it (lbd) share it.
package redistest
