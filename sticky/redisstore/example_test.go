package redisstore_test

import (
	"log"

	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/sticky/redisstore"
)

// Every node of a fleet gives its sticky groups the same Redis; a client
// then keeps its target whichever node it reaches.
func ExampleDial() {
	store := redisstore.Dial("127.0.0.1:6379") // does not connect yet
	defer store.Close()
	l, err := lb.New(
		lb.WithListener("front", lb.HTTP, "127.0.0.1:0", lb.WithForwardTo("web")),
		lb.WithTargetGroup("web", lb.HTTP,
			lb.WithTarget("127.0.0.1:8081"), lb.WithTarget("127.0.0.1:8082"),
			lb.WithStickiness(lb.Stickiness{Kind: lb.SourceIP, Store: store})),
	)
	if err != nil {
		log.Fatal(err)
	}
	_ = l // l.Start() serves; a Redis that fails costs each request at most the store timeout
}
