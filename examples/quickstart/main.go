// Command quickstart shows lbkit's balancer at work: smooth weighted
// round-robin, a target turning unhealthy, and source-IP consistent hashing
// that keeps clients on their target. It uses only the public API.
//
//	go run ./examples/quickstart
package main

import (
	"fmt"
	"log"
	"net/netip"
	"os"
	"strings"

	"github.com/lbkit/lbkit/balancer"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	targets := []balancer.Target{
		{ID: "web-a", Addr: "127.0.0.1:8081", Weight: 5},
		{ID: "web-b", Addr: "127.0.0.1:8082", Weight: 1},
		{ID: "web-c", Addr: "127.0.0.1:8083", Weight: 1},
	}
	b, err := balancer.New(balancer.WithTargets(targets...))
	if err != nil {
		return err
	}

	fmt.Println("smooth weighted round-robin, weights 5,1,1:")
	fmt.Println("  " + sequence(b, 14))

	fmt.Println("web-a turns unhealthy; the very next pick avoids it:")
	if err := b.SetHealth("web-a", balancer.Unhealthy); err != nil {
		return err
	}
	fmt.Println("  " + sequence(b, 6))
	if err := b.SetHealth("web-a", balancer.Healthy); err != nil {
		return err
	}

	fmt.Println("source-IP consistent hashing (Maglev): each client keeps its target")
	if err := b.SetAlgorithm(balancer.SourceIPHash); err != nil {
		return err
	}
	if err := b.SetWeight("web-a", 1); err != nil {
		return err
	}
	clients := []string{"192.0.2.10", "192.0.2.11", "192.0.2.12", "198.51.100.7", "2001:db8::42", "2001:db8::43"}
	before := owners(b, clients)
	if err := b.SetHealth("web-b", balancer.Unhealthy); err != nil {
		return err
	}
	during := owners(b, clients)
	if err := b.SetHealth("web-b", balancer.Healthy); err != nil {
		return err
	}
	after := owners(b, clients)
	for i, c := range clients {
		fmt.Printf("  %-14s %s  (web-b down: %s, back: %s)\n", c, before[i], during[i], after[i])
	}

	st := b.Stats()
	fmt.Fprintf(os.Stdout, "stats: algorithm %s, %d healthy, %d eligible\n", st.Algorithm, st.Healthy, st.Eligible)
	return nil
}

// sequence picks n times and returns the picked targets' last letters.
func sequence(b *balancer.Balancer, n int) string {
	var s []string
	for range n {
		p, err := b.Pick(balancer.PickInfo{})
		if err != nil {
			return err.Error()
		}
		s = append(s, p.Target.ID[len(p.Target.ID)-1:])
		p.Done()
	}
	return strings.Join(s, " ")
}

func owners(b *balancer.Balancer, clients []string) []string {
	out := make([]string, len(clients))
	for i, c := range clients {
		p, err := b.Pick(balancer.PickInfo{Source: netip.MustParseAddr(c)})
		if err != nil {
			out[i] = err.Error()
			continue
		}
		out[i] = p.Target.ID
		p.Done()
	}
	return out
}
