package sticky_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/lbkit/lbkit/sticky"
)

// A fixed clock makes the examples' output reproducible.
func fixedClock() time.Time { return time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC) }

// serve is how a proxy uses any Policy: look up, else pick; forward; then
// remember the target used.
func serve(p sticky.Policy, r sticky.Request, pick func() string) (id string, resp http.Header) {
	id, ok := p.Lookup(r)
	if !ok {
		id = pick()
	}
	resp = http.Header{} // the target's response header, before it is written
	p.Remember(r, id, sticky.Header(resp))
	return id, resp
}

func ExamplePolicy() {
	p, err := sticky.NewSourceIP()
	if err != nil {
		panic(err)
	}
	targets := []string{"a", "b", "c"}
	n := 0
	roundRobin := func() string { n++; return targets[(n-1)%len(targets)] }

	alice := sticky.Request{Source: netip.MustParseAddr("192.0.2.10")}
	bob := sticky.Request{Source: netip.MustParseAddr("2001:db8::20")}
	for range 3 {
		a, _ := serve(p, alice, roundRobin)
		b, _ := serve(p, bob, roundRobin)
		fmt.Println("alice →", a, " bob →", b)
	}
	// Output:
	// alice → a  bob → b
	// alice → a  bob → b
	// alice → a  bob → b
}

func ExampleNewSourceIP() {
	// Clients behind a NAT that rotates addresses within a /24 (IPv4) or a
	// /64 (IPv6) keep their target.
	p, err := sticky.NewSourceIP(sticky.WithPrefix(24, 64), sticky.WithCapacity(100_000))
	if err != nil {
		panic(err)
	}
	p.Remember(sticky.Request{Source: netip.MustParseAddr("198.51.100.7")}, "web-2", nil)
	id, ok := p.Lookup(sticky.Request{Source: netip.MustParseAddr("198.51.100.200")})
	fmt.Println(id, ok)
	_, ok = p.Lookup(sticky.Request{Source: netip.MustParseAddr("198.51.101.7")})
	fmt.Println(ok)
	// Output:
	// web-2 true
	// false
}

func ExampleNewCookie() {
	key := bytes.Repeat([]byte{42}, 32) // in production: 32 bytes from crypto/rand, shared by every node
	p, err := sticky.NewCookie(sticky.WithKeys(key), sticky.WithClock(fixedClock), sticky.WithCookieName("SRV"))
	if err != nil {
		panic(err)
	}
	// First request: no cookie. The proxy picks web-1; Remember sets the
	// cookie on the response.
	first, _ := http.NewRequest(http.MethodGet, "http://example.com/", nil)
	resp := http.Header{}
	p.Remember(sticky.HTTPRequest(netip.Addr{}, first), "web-1", sticky.Header(resp))
	fmt.Println(resp.Get("Set-Cookie"))

	// The browser sends it back: the request goes to web-1.
	next, _ := http.NewRequest(http.MethodGet, "http://example.com/cart", nil)
	c, _ := http.ParseSetCookie(resp.Get("Set-Cookie"))
	next.AddCookie(c)
	fmt.Println(p.Lookup(sticky.HTTPRequest(netip.Addr{}, next)))

	// A forged or damaged cookie is no cookie: a fresh pick, counted.
	bad, _ := http.NewRequest(http.MethodGet, "http://example.com/", nil)
	bad.Header.Set("Cookie", "SRV=web-2")
	fmt.Println(p.Lookup(sticky.HTTPRequest(netip.Addr{}, bad)))
	fmt.Printf("%+v\n", p.Stats().BadCookies)
	// Output:
	// SRV=AQcNjAwAAAAAcN1Z1QFKWW1HhRbaKt2Qaq4XFRDmMmLb7a1B78FBa5nQWsZhb9k1Qs7tkYwN44g85TYzRD0; Path=/; Expires=Wed, 02 Jan 2030 03:24:05 GMT; Max-Age=1200; HttpOnly; SameSite=Lax
	// web-1 true
	//  false
	// {Tampered:0 Truncated:0 Oversized:0 Expired:0 WrongKey:0 Garbage:1}
}

func ExampleCookie_RotateKey() {
	oldKey, newKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	p, err := sticky.NewCookie(sticky.WithKeys(oldKey), sticky.WithKeyGrace(20*time.Minute))
	if err != nil {
		panic(err)
	}
	r, _ := http.NewRequest(http.MethodGet, "http://example.com/", nil)
	resp := http.Header{}
	p.Remember(sticky.HTTPRequest(netip.Addr{}, r), "web-1", sticky.Header(resp))
	c, _ := http.ParseSetCookie(resp.Get("Set-Cookie"))
	r.AddCookie(c)

	// With several nodes: AcceptKey(newKey) on every node first.
	if err := p.RotateKey(newKey); err != nil {
		panic(err)
	}
	fmt.Println(p.Lookup(sticky.HTTPRequest(netip.Addr{}, r))) // the old key verifies for 20 minutes
	resp = http.Header{}
	p.Remember(sticky.HTTPRequest(netip.Addr{}, r), "web-1", sticky.Header(resp))
	fmt.Println(len(resp["Set-Cookie"])) // re-issued under the new key
	// Output:
	// web-1 true
	// 1
}

func ExampleNewAppCookie() {
	p, err := sticky.NewAppCookie("JSESSIONID", sticky.WithTargetState(func(id string) sticky.TargetState {
		if id == "web-3" {
			return sticky.Unusable // say, failed its health check
		}
		return sticky.Usable
	}))
	if err != nil {
		panic(err)
	}
	// The application on web-2 starts a session; the balancer learns it.
	login, _ := http.NewRequest(http.MethodPost, "http://example.com/login", nil)
	p.Remember(sticky.HTTPRequest(netip.Addr{}, login), "web-2", sticky.Header(http.Header{"Set-Cookie": {"JSESSIONID=8f14e45f; Path=/; HttpOnly"}}))
	p.Remember(sticky.HTTPRequest(netip.Addr{}, login), "web-3", sticky.Header(http.Header{"Set-Cookie": {"JSESSIONID=c9f0f895; Path=/"}}))

	for _, v := range []string{"8f14e45f", "c9f0f895", "made-up"} {
		r, _ := http.NewRequest(http.MethodGet, "http://example.com/", nil)
		r.Header.Set("Cookie", "JSESSIONID="+v)
		id, ok := p.Lookup(sticky.HTTPRequest(netip.Addr{}, r))
		fmt.Printf("%s: %q %v\n", v, id, ok)
	}
	st := p.Stats()
	fmt.Println("entries", st.Entries, "repicks", st.Repicks)
	// Output:
	// 8f14e45f: "web-2" true
	// c9f0f895: "" false
	// made-up: "" false
	// entries 2 repicks 1
}

// memStore is a Store in one process, standing in for a shared one such
// as Redis (see the sticky/redisstore module).
type memStore struct {
	mu sync.Mutex // guards m
	m  map[string]string
}

func (s *memStore) Load(_ context.Context, key string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.m[key]
	return id, ok, nil
}

func (s *memStore) Save(_ context.Context, key, id string, _ time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = id
	return nil
}

func ExampleWithStore() {
	shared := &memStore{m: map[string]string{}}
	node1, err := sticky.NewSourceIP(sticky.WithStore(shared))
	if err != nil {
		panic(err)
	}
	node2, err := sticky.NewSourceIP(sticky.WithStore(shared))
	if err != nil {
		panic(err)
	}
	alice := sticky.Request{Source: netip.MustParseAddr("192.0.2.10")}
	id, _ := serve(node1, alice, func() string { return "b" }) // node 1 picks b
	fmt.Println("node 1:", id)
	id, _ = serve(node2, alice, func() string { return "c" }) // node 2 would pick c
	fmt.Println("node 2:", id)
	fmt.Println("store:", shared.m)
	// Output:
	// node 1: b
	// node 2: b
	// store: map[ip:192.0.2.10/32:b]
}
