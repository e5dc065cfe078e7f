// Package config reads a load balancer's configuration from a YAML file
// and turns it into lb options, so that a daemon (see cmd/lbd) can be
// configured, and reconfigured live, from a file.
//
// The file mirrors the lb package's model, with its names in snake_case:
// listeners forward to target groups, target groups hold targets. Every
// field may be left out and then takes the lb package's default; the Go
// types of this package document each field's name in the file, its
// meaning and its default. Durations are written as Go writes them
// ("350s", "5m", "250ms").
//
//	listeners:
//	  - name: web
//	    protocol: http
//	    address: 127.0.0.1:8080
//	    forward_to: app
//	target_groups:
//	  - name: app
//	    protocol: http
//	    targets:
//	      - {address: 127.0.0.1:9001, id: app-1}
//	      - {address: 127.0.0.1:9002, id: app-2, weight: 3}
//	    health_check: {path: /healthz, interval: 5s}
//
// # Checking
//
// Load and Parse check everything before they return: unknown fields,
// values of the wrong type, ranges, references between objects, rules that
// conflict, certificate files that do not load, and everything lb.New
// checks. An invalid file is refused with an *Error that lists every
// problem at once, each at the path of its field and its line:
//
//	lbd.yaml: 2 problems:
//		listeners[1].address: "127.0.0.1:70000": port 70000 is out of range 0..65535 (line 9)
//		target_groups[0].targets[2].weight: 150 is out of range 0..100 (line 17)
//
// # Using it
//
//	f, err := config.Load("lbd.yaml")
//	if err != nil { ... } // every problem, by path
//	opts, err := f.Options(accessLog)
//	if err != nil { ... } // a certificate file vanished meanwhile
//	l, err := lb.New(append(opts, lb.WithLogger(logger))...)
//
// On a reload, load the file again and give its options to
// LoadBalancer.Reconfigure: a bad file changes nothing, a good one applies
// live without breaking established connections.
package config
