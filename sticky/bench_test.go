package sticky

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lbkit/lbkit/internal/benchcpu"
)

// clientAddrs returns n distinct client addresses, IPv4 and IPv6 mixed.
func clientAddrs(n int) []netip.Addr {
	as := make([]netip.Addr, n)
	for i := range as {
		if i%2 == 0 {
			as[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		} else {
			as[i] = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		}
	}
	return as
}

// BenchmarkSourceIPLookup measures a lookup that hits (and refreshes) a
// session, over tables of 1 000 and 100 000 clients, serially, from one
// goroutine per core (parallel) and from eight per core (parallel8, a proxy
// with many connections in flight), beside the baseline: one map behind one
// mutex (impl=mutexmap).
func BenchmarkSourceIPLookup(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		as := clientAddrs(n)
		for _, mode := range []string{"serial", "parallel", "parallel8"} {
			b.Run(fmt.Sprintf("impl=sticky/clients=%d/mode=%s", n, mode), func(b *testing.B) {
				p := mustSourceIP(b, WithCapacity(n))
				for _, a := range as {
					p.Remember(Request{Source: a}, "target-1", nil)
				}
				runLookups(b, mode, len(as), func(i int) bool { _, ok := p.Lookup(Request{Source: as[i]}); return ok })
			})
			b.Run(fmt.Sprintf("impl=mutexmap/clients=%d/mode=%s", n, mode), func(b *testing.B) {
				m := newMutexMap(DefaultDuration)
				for _, a := range as {
					m.remember(a, "target-1")
				}
				runLookups(b, mode, len(as), func(i int) bool { _, ok := m.lookup(as[i]); return ok })
			})
		}
	}
}

// runLookups calls f over the indexes 0..n-1 in turn, each parallel worker
// from its own starting point, and fails on a miss.
func runLookups(b *testing.B, mode string, n int, f func(i int) bool) {
	if mode == "serial" {
		i := 0
		serial(b, func() {
			if !f(i) {
				b.Fatal("miss")
			}
			if i++; i == n {
				i = 0
			}
		})
		return
	}
	if mode == "parallel8" {
		b.SetParallelism(8)
	}
	var worker atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	defer benchcpu.Measure(b)()
	b.RunParallel(func(pb *testing.PB) {
		i := int(worker.Add(1)*7919) % n
		for pb.Next() {
			if !f(i) {
				b.Error("miss")
				return
			}
			if i++; i == n {
				i = 0
			}
		}
	})
}

// serial runs f b.N times with allocations and CPU time reported.
func serial(b *testing.B, f func()) {
	b.ReportAllocs()
	defer benchcpu.Measure(b)()
	for b.Loop() {
		f()
	}
}

// BenchmarkCookieEncode measures making a cookie value for a target (the
// binary cookie sealed, then base64url) into a reused buffer, and making a
// whole Set-Cookie line, beside the baseline: the same fields in plain hex,
// no MAC, no encryption (impl=hex-nomac).
func BenchmarkCookieEncode(b *testing.B) {
	exp := time.Now().Add(DefaultDuration).Unix()
	for _, id := range []string{"web-1", "target-0123456789abcdef0123456789abcdef"} {
		name := fmt.Sprintf("id=%d", len(id))
		b.Run("impl=sticky/what=value/"+name, func(b *testing.B) {
			p := mustCookie(b)
			k := p.keys.Load().keys[0].k
			buf := make([]byte, 0, maxValueLen)
			serial(b, func() {
				st := k.get()
				buf = base64.RawURLEncoding.AppendEncode(buf[:0], k.seal(st, p.ctx, id, exp))
				k.put(st)
			})
		})
		b.Run("impl=hex-nomac/what=value/"+name, func(b *testing.B) {
			h := &hexCookie{}
			buf := make([]byte, 0, 512)
			serial(b, func() {
				buf = h.appendValue(buf[:0], id, exp)
			})
		})
		b.Run("impl=sticky/what=set-cookie/"+name, func(b *testing.B) {
			p := mustCookie(b)
			ks := p.keys.Load()
			now := time.Now()
			serial(b, func() {
				_ = p.issue(ks, id, now, false)
			})
		})
		b.Run("impl=hex-nomac/what=set-cookie/"+name, func(b *testing.B) {
			p := mustCookie(b)
			h := &hexCookie{}
			buf := make([]byte, 0, 512)
			serial(b, func() {
				buf = append(buf[:0], p.name...)
				buf = append(buf, '=')
				buf = h.appendValue(buf, id, exp)
				buf = append(buf, p.pre...)
				buf = append(buf, "; Expires="...)
				buf = time.Unix(exp, 0).UTC().AppendFormat(buf, http.TimeFormat)
				buf = append(buf, p.post...)
				buf = append(buf, p.sameSite...)
				_ = string(buf)
			})
		})
	}
}

// BenchmarkCookieVerify measures reading a valid cookie value back to its
// target (decode, decrypt, check the tag, check the expiry), and refusing a
// tampered one, beside the baseline: plain hex, no MAC (impl=hex-nomac),
// which cannot refuse anything.
func BenchmarkCookieVerify(b *testing.B) {
	now := time.Now()
	exp := now.Add(DefaultDuration).Unix()
	for _, id := range []string{"web-1", "target-0123456789abcdef0123456789abcdef"} {
		name := fmt.Sprintf("id=%d", len(id))
		p := mustCookie(b)
		ks := p.keys.Load()
		st := ks.keys[0].k.get()
		v := base64.RawURLEncoding.EncodeToString(ks.keys[0].k.seal(st, p.ctx, id, exp))
		p.intern(id)
		forged := v[:len(v)-2] + "AA"
		b.Run("impl=sticky/cookie=valid/"+name, func(b *testing.B) {
			serial(b, func() {
				if _, _, _, vd := p.read(ks, v, now); vd != valid {
					b.Fatal(vd)
				}
			})
		})
		b.Run("impl=sticky/cookie=tampered/"+name, func(b *testing.B) {
			serial(b, func() {
				if _, _, _, vd := p.read(ks, forged, now); vd != tampered {
					b.Fatal(vd)
				}
			})
		})
		b.Run("impl=hex-nomac/cookie=valid/"+name, func(b *testing.B) {
			h := &hexCookie{ids: map[string]string{id: id}}
			hv := string(h.appendValue(nil, id, exp))
			serial(b, func() {
				if _, ok := h.read(hv, now.Unix()); !ok {
					b.Fatal("refused")
				}
			})
		})
	}
}

// BenchmarkAppCookieLookup measures a whole application cookie lookup from
// a request's Cookie header, beside the baseline: net/http's Request.Cookie
// and the value as the key of one map behind one mutex (impl=mutexmap).
func BenchmarkAppCookieLookup(b *testing.B) {
	const n = 10_000
	values := make([]string, n)
	reqs := make([]*http.Request, n)
	for i := range values {
		values[i] = fmt.Sprintf("%032x", i*7919)
		reqs[i] = &http.Request{Header: http.Header{"Cookie": {"theme=dark; JSESSIONID=" + values[i] + "; lang=en"}}}
	}
	for _, mode := range []string{"serial", "parallel"} {
		b.Run("impl=sticky/mode="+mode, func(b *testing.B) {
			p := mustAppCookie(b, WithCapacity(n))
			for i, v := range values {
				p.Remember(HTTPRequest(netip.Addr{}, reqs[i]), "target-1", Header(http.Header{"Set-Cookie": {"JSESSIONID=" + v + "; Path=/"}}))
			}
			runLookups(b, mode, n, func(i int) bool { _, ok := p.Lookup(HTTPRequest(netip.Addr{}, reqs[i])); return ok })
		})
		b.Run("impl=mutexmap/mode="+mode, func(b *testing.B) {
			m := &mutexStringMap{name: "JSESSIONID", m: map[string]string{}}
			for _, v := range values {
				m.m[v] = "target-1"
			}
			runLookups(b, mode, n, func(i int) bool { _, ok := m.lookup(reqs[i]); return ok })
		})
	}
}
