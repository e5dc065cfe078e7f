// Command sidecar puts an lbkit HTTP listener in front of one local service,
// as a sidecar does: health checks on the service's health endpoint, passive
// ejection, access logs, client access control, X-Forwarded-For, and a
// Diagnose report on demand (SIGUSR1) that says why requests fail.
//
//	go run ./examples/sidecar -listen 127.0.0.1:8000 -service 127.0.0.1:8080 -health /healthz
//	go run ./examples/sidecar -demo   # runs a demo service, sends requests, exits
//
// It uses only lbkit's public API.
package main
