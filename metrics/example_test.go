package metrics_test

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"

	"github.com/lbkit/lbkit/metrics"
)

// Example serves a load balancer's metrics (here a fixed snapshot; in a
// program, the *lb.LoadBalancer) and prints some of the exposition.
func Example() {
	h := metrics.Handler(snapshot())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "lbkit_http_requests_total") || strings.HasPrefix(line, "lbkit_flows_active") {
			fmt.Println(line)
		}
	}
	// Output:
	// lbkit_flows_active{protocol="tcp"} 2
	// lbkit_flows_active{protocol="udp"} 1
	// lbkit_http_requests_total{code_class="1xx",listener="web"} 0
	// lbkit_http_requests_total{code_class="2xx",listener="web"} 40
	// lbkit_http_requests_total{code_class="3xx",listener="web"} 1
	// lbkit_http_requests_total{code_class="4xx",listener="web"} 2
	// lbkit_http_requests_total{code_class="5xx",listener="web"} 3
}
