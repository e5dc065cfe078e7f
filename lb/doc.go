// Package lb assembles lbkit's packages into a load balancer: listeners
// (TCP, UDP, TLS, HTTP, HTTPS) that forward to target groups (targets with
// weights, an algorithm, health checks, stickiness and a deregistration
// delay), configured with functional options, changed live while traffic
// flows, and explained by Stats and Diagnose.
package lb
