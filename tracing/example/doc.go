// Command example traces requests through lbkit with OpenTelemetry: the
// guide docs/guides/tracing.md quotes it, and its test runs it.
//
//	go run .                                  # spans printed
//	go run . -otlp 127.0.0.1:4318 -protocol http   # spans sent to a collector
package main
