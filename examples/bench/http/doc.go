// Command http is the HTTP side of lbkit's peer benchmark: a target that
// answers 100 bytes, lbkit's HTTP proxy (mode lbkit, and lbkit-loop with
// proxy.HTTP.EventLoop), and a plain httputil.ReverseProxy,
// each on 127.0.0.1, for run.sh to put beside nginx and HAProxy under wrk.
// It uses only lbkit's public API.
//
//	go run ./examples/bench/http -mode target -listen 127.0.0.1:18080
//	go run ./examples/bench/http -mode lbkit -listen 127.0.0.1:18081 -target 127.0.0.1:18080
//	go run ./examples/bench/http -mode lbkit-loop -listen 127.0.0.1:18088 -target 127.0.0.1:18080
//	go run ./examples/bench/http -mode httputil -listen 127.0.0.1:18082 -target 127.0.0.1:18080
package main
