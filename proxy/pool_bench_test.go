package proxy

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lbkit/lbkit/balancer"
)

// BenchmarkPoolPut measures taking an idle connection to a target and
// returning it (what every HTTP/1 request does), from every goroutine at
// once, each on its own target: "impl=lbkit" is the pool as it is (the target's
// lock only while the sweep is armed), "put-locked" the baseline that also
// takes the pool's lock for the whole group on every return, as put did
// before. Run with -cpu 1,2,4,8: the difference is contention, which one
// core hides.
func BenchmarkPoolPut(b *testing.B) {
	for _, bc := range []struct {
		name string
		put  func(*pool, *tconn)
	}{
		{"impl=lbkit", (*pool).put},
		{"impl=locked", (*pool).putLocked},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const targets, perTarget = 8, 4
			p, hosts := benchPool(b, targets, perTarget)
			var next atomic.Int32
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				h := hosts[int(next.Add(1)-1)%targets]
				for pb.Next() {
					c := p.takeIdle(h, true)
					if c == nil {
						continue // the target's connections are all taken
					}
					bc.put(p, c)
				}
			})
		})
	}
}

// putLocked is put as it was before the sweep's state became atomic: the
// pool's lock on every return. The baseline of BenchmarkPoolPut.
func (p *pool) putLocked(c *tconn) {
	c.idleAt = time.Now()
	c.unchecked = false
	c.r, c.w = 0, 0
	c.resp.Reset()
	h := c.host
	h.mu.Lock()
	if len(h.idle) >= p.maxIdle {
		h.mu.Unlock()
		c.close()
		return
	}
	h.idle = append(h.idle, c)
	h.mu.Unlock()
	c.st.freed()
	p.mu.Lock()
	closed := p.closed.Load()
	if !closed && !p.armed.Load() {
		p.armed.Store(true)
		if p.sweep == nil {
			p.sweep = time.AfterFunc(idleConnTimeout, p.sweepIdle)
		} else {
			p.sweep.Reset(idleConnTimeout)
		}
	}
	p.mu.Unlock()
	if closed {
		p.closeIdle()
	}
}

// benchPool returns a pool with perTarget idle connections to each of n
// loopback targets (which accept and hold them), and the targets' lists.
func benchPool(b *testing.B, n, perTarget int) (*pool, []*poolHost) {
	b.Helper()
	bal, err := balancer.New()
	if err != nil {
		b.Fatal(err)
	}
	up := &Upstream{Name: "bench", Balancer: bal}
	p := newPool(up, perTarget)
	b.Cleanup(p.closeIdle)
	var hosts []*poolHost
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ln.Close() })
		held := make(chan net.Conn, perTarget)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				held <- c
			}
		}()
		b.Cleanup(func() {
			for range perTarget {
				(<-held).Close()
			}
		})
		id := fmt.Sprintf("t%d", i)
		if err := bal.Add(balancer.Target{ID: id, Addr: ln.Addr().String(), Weight: 1}); err != nil {
			b.Fatal(err)
		}
		st := up.state(id)
		h := p.host(ln.Addr().String())
		for range perTarget {
			c, _, err := p.dial(context.Background(), h, time.Now().Add(5*time.Second))
			if err != nil {
				b.Fatal(err)
			}
			c.st = st
			p.put(c)
		}
		hosts = append(hosts, h)
	}
	return p, hosts
}
