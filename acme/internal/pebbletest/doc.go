// Package pebbletest runs Let's Encrypt's Pebble, a real ACME server, for
// the tests of the acme module and its example.
package pebbletest
