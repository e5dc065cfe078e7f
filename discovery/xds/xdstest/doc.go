// Package xdstest runs go-control-plane's xDS server with a snapshot cache
// on a loopback port, and builds the Envoy resources lbkit understands, for
// the xds module's tests, its example and its guide. It is a test helper,
// not a control plane for production.
package xdstest
