package config_test

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/lbkit/lbkit/config"
	"github.com/lbkit/lbkit/lb"
)

// Example reads a configuration and starts the load balancer it describes.
func Example() {
	f, err := config.Parse([]byte(`
listeners:
  - name: web
    protocol: http
    address: 127.0.0.1:0
    fixed: {status: 200, body: "hello from lbkit\n"}
`))
	if err != nil {
		fmt.Println(err) // every problem, by path
		return
	}
	opts, err := f.Options(nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	l, err := lb.New(append(opts, lb.WithLogger(slog.New(slog.DiscardHandler)))...)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := l.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	addr, _ := l.Addr("web")
	resp, err := http.Get("http://" + addr.String() + "/")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output: 200 OK
}

// ExampleParse_invalid shows an invalid file refused with every problem,
// each at the path of its field.
func ExampleParse_invalid() {
	_, err := config.Parse([]byte(`
listeners:
  - name: web
    protocol: http
    address: 127.0.0.1:8080
    forward_to: app
  - name: db
    protocol: tcp
    address: 127.0.0.1:70000
    forward_to: app
target_groups:
  - name: app
    protocol: http
    targets:
      - address: 127.0.0.1:9001
      - address: 127.0.0.1:9002
      - {address: 127.0.0.1:9003, weight: 150}
    health_check: {interval: 5 seconds}
`))
	fmt.Println(err)
	// Output:
	// 4 problems:
	// 	listeners[db].address: "127.0.0.1:70000": port 70000 is out of range 0..65535 (line 9)
	// 	listeners[db].forward_to: a tcp listener cannot forward to http target group "app" (allowed: tcp→tcp, udp→udp, tls→tcp|tls, http→http, https→http|https) (line 10)
	// 	target_groups[app].targets[127.0.0.1:9003].weight: 150 is out of range 0..100 (line 17)
	// 	target_groups[app].health_check.interval: "5 seconds" is not a duration (write it as "300ms", "5s", "2m30s") (line 18)
}
