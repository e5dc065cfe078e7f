// Command flood is a bounded load tool for lbkit's robustness figures
// (docs/robustness.md): attacks on a load balancer on 127.0.0.1 while
// normal clients use it, and held idle connections for memory measurements.
// It talks to loopback addresses only and every run stops by itself.
//
//	flood targets -tcp ADDR -http ADDR -udp ADDR
//	    targets for the load balancer: a TCP echo, an HTTP server answering
//	    "ok", a UDP echo (which also accepts TCP on its port, for health
//	    checks); until SIGTERM or SIGINT.
//	flood attack -mode udp|tcp-hold [-sources ...] [...] -tcp ADDR -http URL -udp ADDR [-check ...]
//	    normal clients from 127.0.0.1 (a new TCP connection per echo, a new
//	    HTTP connection per request, one UDP socket) run for a warm-up,
//	    then for the attack: a UDP flood (one datagram per source address
//	    and port, cycling over -ports ports of each of -sources, at -rate a
//	    second) or -conns TCP connections from -sources held open; then
//	    every listener given to -check must serve again. It prints each
//	    kind's success rate during the attack and the time each listener
//	    took to serve afterwards.
//	flood hold -target ADDR -conns N -sources ... -for DURATION [-ping|-get]
//	    opens N TCP connections to ADDR (spread over the source addresses),
//	    with -ping sends a line on each and reads its echo, with -get sends
//	    an HTTP/1.1 GET and reads its answer (keep-alive), then holds them
//	    idle, and says how many were still open at the end.
//
// run.sh builds lbd and flood, starts them under a descriptor limit, runs
// the measurements of docs/robustness.md and writes the raw results to
// docs/bench/robustness.txt.
package main
