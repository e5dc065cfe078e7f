package proxy

// listenerForTest returns one of the proxy's listeners, for tests that
// drive the datagram path directly.
func (p *UDP) listenerForTest() *udpListener {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.listeners {
		return &udpListener{p: p, conn: c, local: addrPortOf(c.LocalAddr()), ft: p.flows}
	}
	return nil
}
