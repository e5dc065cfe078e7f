package balancer

import "sync"

// nginxWRR is the reference smooth weighted round-robin of nginx
// (ngx_http_upstream_get_peer): an O(n) scan under a mutex. It is the
// baseline of the pick benchmarks and the yardstick of the smoothness tests.
type nginxWRR struct {
	mu    sync.Mutex // guards peers
	peers []nginxPeer
}

type nginxPeer struct {
	id              string
	weight, current int
}

func newNginxWRR(ts []Target) *nginxWRR {
	n := &nginxWRR{}
	for _, t := range ts {
		if t.eligible() {
			n.peers = append(n.peers, nginxPeer{id: t.ID, weight: t.Weight})
		}
	}
	return n
}

func (n *nginxWRR) pick() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	total := 0
	var best *nginxPeer
	for i := range n.peers {
		p := &n.peers[i]
		p.current += p.weight
		total += p.weight
		if best == nil || p.current > best.current {
			best = p
		}
	}
	if best == nil {
		return ""
	}
	best.current -= total
	return best.id
}
