package balancer_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/lbkit/lbkit/balancer"
)

func Example() {
	b, err := balancer.New(balancer.WithTargets(
		balancer.Target{ID: "a", Addr: "127.0.0.1:8081", Weight: 5},
		balancer.Target{ID: "b", Addr: "127.0.0.1:8082", Weight: 1},
		balancer.Target{ID: "c", Addr: "127.0.0.1:8083", Weight: 1},
	))
	if err != nil {
		fmt.Println(err)
		return
	}
	var seq []string
	for range 7 {
		p, err := b.Pick(balancer.PickInfo{})
		if err != nil {
			fmt.Println(err)
			return
		}
		seq = append(seq, p.Target.ID)
		p.Done() // when the connection or request ends
	}
	fmt.Println(strings.Join(seq, " "))
	// Output: a b a a a c a
}

func ExampleBalancer_SetHealth() {
	b, _ := balancer.New(balancer.WithTargets(
		balancer.Target{ID: "a", Addr: "127.0.0.1:8081", Weight: 1},
	))
	_ = b.SetHealth("a", balancer.Unhealthy)
	_, err := b.Pick(balancer.PickInfo{})
	fmt.Println(errors.Is(err, balancer.ErrNoTarget))
	// Output: true
}

func ExampleNew_validation() {
	_, err := balancer.New(balancer.WithTargets(
		balancer.Target{ID: "a", Addr: "127.0.0.1:8081", Weight: 150},
		balancer.Target{ID: "a", Addr: "localhost", Weight: 1},
	))
	fmt.Println(err)
	// Output:
	// target[0] "a": invalid target: weight 150 is out of range 0..100
	// target[1] "a": invalid target: addr "localhost" is not host:port
	// target[1] "a": duplicate target: id also used by target[0]
}

func ExampleBalancer_Pick_sourceIPHash() {
	b, _ := balancer.New(
		balancer.WithAlgorithm(balancer.SourceIPHash),
		balancer.WithTargets(
			balancer.Target{ID: "a", Addr: "127.0.0.1:8081", Weight: 1},
			balancer.Target{ID: "b", Addr: "127.0.0.1:8082", Weight: 1},
			balancer.Target{ID: "c", Addr: "127.0.0.1:8083", Weight: 1},
		),
	)
	client := netip.MustParseAddr("198.51.100.7")
	first, _ := b.Pick(balancer.PickInfo{Source: client})
	again, _ := b.Pick(balancer.PickInfo{Source: client})
	fmt.Println(first.Target.ID == again.Target.ID)
	// Output: true
}

func ExampleBalancer_Pick_leastConnections() {
	b, _ := balancer.New(
		balancer.WithAlgorithm(balancer.LeastConnections),
		balancer.WithTargets(
			balancer.Target{ID: "big", Addr: "127.0.0.1:8081", Weight: 2},
			balancer.Target{ID: "small", Addr: "127.0.0.1:8082", Weight: 1},
		),
	)
	open := map[string]int{}
	for range 6 { // six long-lived connections, none finished yet
		p, _ := b.Pick(balancer.PickInfo{})
		open[p.Target.ID]++
	}
	fmt.Println(open["big"], open["small"])
	// Output: 4 2
}

func ExampleHashString() {
	b, _ := balancer.New(
		balancer.WithAlgorithm(balancer.KeyHash),
		balancer.WithTargets(
			balancer.Target{ID: "a", Addr: "127.0.0.1:8081", Weight: 1},
			balancer.Target{ID: "b", Addr: "127.0.0.1:8082", Weight: 1},
		),
	)
	key := balancer.HashString("/videos/42.mp4") // e.g. the request URI
	p1, _ := b.Pick(balancer.PickInfo{Hash: key})
	p2, _ := b.Pick(balancer.PickInfo{Hash: key})
	fmt.Println(p1.Target.ID == p2.Target.ID)
	// Output: true
}
