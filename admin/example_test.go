package admin_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"

	"github.com/lbkit/lbkit/admin"
	"github.com/lbkit/lbkit/lb"
)

// Example serves a load balancer's admin endpoint and asks it to reload a
// configuration that the program's reload function refuses.
func Example() {
	l, _ := lb.New(lb.WithLogger(quiet))
	h := admin.New(l, admin.WithLogger(quiet), admin.WithReload(func(context.Context) error {
		return errors.Join(
			errors.New("listeners[1].address: port 70000 is out of range"),
			errors.New("target_groups[0].targets[2].weight: 150 is out of range 0..100"),
		)
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()

	resp, err := srv.Client().Post(srv.URL+"/reload", "", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status)
	fmt.Print(string(body))
	// Output:
	// 422 Unprocessable Entity
	// {
	//   "ok": false,
	//   "error": "listeners[1].address: port 70000 is out of range\ntarget_groups[0].targets[2].weight: 150 is out of range 0..100",
	//   "problems": [
	//     "listeners[1].address: port 70000 is out of range",
	//     "target_groups[0].targets[2].weight: 150 is out of range 0..100"
	//   ]
	// }
}
