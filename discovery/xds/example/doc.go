// Command example drives two lbkit nodes from a go-control-plane server:
// each node opens an ADS stream, gets its listener, routes, clusters and
// endpoints, and follows every snapshot the control plane sets.
//
//	go run .                       # the demonstration, in one process
//	go run . -bootstrap xds.json   # a node of your own control plane, until Ctrl-C
//
// See docs/guides/xds.md.
package main
