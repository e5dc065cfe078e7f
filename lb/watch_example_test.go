package lb_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/lbkit/lbkit/lb"
)

// pushSource is a Watcher fed by a channel, standing in for a Kubernetes
// informer or an xDS stream: it pushes each update it receives and says
// when the group has applied it.
type pushSource struct {
	updates chan lb.Update
	applied chan struct{}
}

func (p pushSource) Targets(context.Context) ([]lb.Discovered, error) {
	return nil, errors.New("push only")
}

func (p pushSource) String() string { return "registry" }

func (p pushSource) Watch(ctx context.Context, push func(lb.Update)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case u := <-p.updates:
			push(u) // applied when it returns
			p.applied <- struct{}{}
		}
	}
}

func ExampleWatcher() {
	src := pushSource{updates: make(chan lb.Update), applied: make(chan struct{})}
	l, err := lb.New(lb.WithLogger(quiet),
		lb.WithTargetGroup("web", lb.TCP, lb.WithoutHealthCheck(), lb.WithDiscovery(src, 0)))
	if err != nil {
		panic(err)
	}
	if err := l.Start(); err != nil {
		panic(err)
	}
	defer l.Close()
	show := func(u lb.Update) {
		src.updates <- u
		<-src.applied
		g := l.Diagnose(lb.Query{}).Groups[0]
		for _, t := range g.Targets {
			fmt.Printf("%s weight %d, receiving traffic: %t, draining: %t\n", t.ID, t.Weight, t.OK, !t.DrainUntil.IsZero())
		}
		fmt.Println("--")
	}
	show(lb.Update{Targets: []lb.Discovered{{Addr: "192.0.2.1:80", Weight: 3000}, {Addr: "192.0.2.2:80", Weight: 1000}}})
	// The registry says the second one is shutting down: it drains.
	show(lb.Update{Targets: []lb.Discovered{{Addr: "192.0.2.1:80", Weight: 3000}, {Addr: "192.0.2.2:80", Weight: 1000, State: lb.Draining}}})
	// Output:
	// 192.0.2.1:80 weight 100, receiving traffic: true, draining: false
	// 192.0.2.2:80 weight 33, receiving traffic: true, draining: false
	// --
	// 192.0.2.1:80 weight 100, receiving traffic: true, draining: false
	// 192.0.2.2:80 weight 33, receiving traffic: false, draining: true
	// --
}
