package flowtable_test

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/lbkit/lbkit/flowtable"
)

// upstream stands for the per-flow state of a proxy, such as the socket to
// the target.
type upstream struct{ name string }

// A table of UDP flows with a fake clock, driven by hand: the flow is made
// by the first datagram, found by the next ones, and expires after 120 s of
// silence.
func Example() {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	flows, err := flowtable.New[*upstream](
		flowtable.WithClock(func() time.Time { return now }),
		flowtable.WithManualSweep(),
		flowtable.WithOnExpire(func(k flowtable.Key, u *upstream) {
			fmt.Printf("expired %v: closing %s\n", k, u.name)
		}),
	)
	if err != nil {
		panic(err)
	}
	defer flows.Close()

	key := flowtable.Key{
		Proto: flowtable.UDP,
		Src:   netip.MustParseAddrPort("192.0.2.10:40000"),
		Dst:   netip.MustParseAddrPort("198.51.100.1:53"),
	}
	dial := func() (*upstream, error) { return &upstream{name: "upstream-1"}, nil }
	for range 3 { // three datagrams
		u, created, err := flows.LoadOrCreate(key, dial)
		if err != nil {
			panic(err)
		}
		fmt.Println(u.name, "created:", created)
	}

	now = now.Add(121 * time.Second)
	flows.Sweep(now)
	st := flows.Stats().UDP
	fmt.Println("new:", st.NewFlowCount, "active:", st.ActiveFlowCount, "expired:", st.ExpiredFlowCount)
	// Output:
	// upstream-1 created: true
	// upstream-1 created: false
	// upstream-1 created: false
	// expired udp 192.0.2.10:40000->198.51.100.1:53: closing upstream-1
	// new: 1 active: 0 expired: 1
}

// A full table refuses new flows with ErrFull and counts them; the flows it
// holds are untouched.
func ExampleWithMaxFlows() {
	flows, err := flowtable.New[string](flowtable.WithMaxFlows(1), flowtable.WithManualSweep())
	if err != nil {
		panic(err)
	}
	defer flows.Close()
	dst := netip.MustParseAddrPort("198.51.100.1:443")
	a := flowtable.Key{Proto: flowtable.TCP, Src: netip.MustParseAddrPort("192.0.2.1:1000"), Dst: dst}
	b := flowtable.Key{Proto: flowtable.TCP, Src: netip.MustParseAddrPort("192.0.2.2:1000"), Dst: dst}

	_, _, err = flows.LoadOrCreate(a, func() (string, error) { return "conn a", nil })
	fmt.Println("a:", err)
	_, _, err = flows.LoadOrCreate(b, func() (string, error) { return "conn b", nil })
	fmt.Println("b:", err, errors.Is(err, flowtable.ErrFull))
	v, ok := flows.Lookup(a)
	fmt.Println(v, ok, "rejected:", flows.Stats().TCP.RejectedFlowCount)
	// Output:
	// a: <nil>
	// b: flowtable: table full true
	// conn a true rejected: 1
}

// The TCP proxy tracks a connection once it is established and deletes it
// when it closes; Delete hands back the state and does not count as an
// expiry.
func ExampleTable_Delete() {
	flows, err := flowtable.New[string](flowtable.WithManualSweep())
	if err != nil {
		panic(err)
	}
	defer flows.Close()
	k := flowtable.Key{
		Proto: flowtable.TCP,
		Src:   netip.MustParseAddrPort("[2001:db8::7]:50000"),
		Dst:   netip.MustParseAddrPort("[2001:db8::1]:443"),
	}
	if _, _, err := flows.LoadOrCreate(k, func() (string, error) { return "client<->target", nil }); err != nil {
		panic(err)
	}
	v, ok := flows.Delete(k)
	fmt.Println(v, ok, flows.Len())
	st := flows.Stats().TCP
	fmt.Println("deleted:", st.DeletedFlowCount, "expired:", st.ExpiredFlowCount)
	// Output:
	// client<->target true 0
	// deleted: 1 expired: 0
}

// UDP flows on probation, as conntrack treats them: a spoofed source's flow
// is never answered, a real client's is answered and used again 2 s later.
// When the table is full, the spoofed flow makes room; the real one stays.
func ExampleWithUnrepliedTimeout() {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	flows, err := flowtable.New[string](flowtable.WithMaxFlows(2), flowtable.WithManualSweep(),
		flowtable.WithClock(func() time.Time { return now }),
		flowtable.WithUnrepliedTimeout(flowtable.UDP, 30*time.Second),
		flowtable.WithOnExpire(func(k flowtable.Key, v string) { fmt.Println("evicted:", v) }))
	if err != nil {
		panic(err)
	}
	defer flows.Close()
	dst := netip.MustParseAddrPort("198.51.100.1:53")
	key := func(src string) flowtable.Key {
		return flowtable.Key{Proto: flowtable.UDP, Src: netip.MustParseAddrPort(src), Dst: dst}
	}
	var real flowtable.Ref[string]
	_, _, _ = flows.LoadOrCreateRef(key("192.0.2.1:5000"), func(r flowtable.Ref[string]) (string, error) {
		real = r // kept by the flow's owner, who sees the replies
		return "real client", nil
	})
	_, _, _ = flows.LoadOrCreate(key("203.0.113.9:1"), func() (string, error) { return "spoofed", nil })
	real.Replied() // the target answered the real client
	now = now.Add(2 * time.Second)
	flows.Sweep(now)
	real.Touch() // and the client went on: a two-way flow

	_, _, err = flows.LoadOrCreate(key("203.0.113.9:2"), func() (string, error) { return "spoofed 2", nil })
	fmt.Println("new flow:", err)
	_, ok := flows.Lookup(key("192.0.2.1:5000"))
	fmt.Println("real client kept:", ok, "evicted:", flows.Stats().UDP.EvictedFlowCount)
	// Output:
	// evicted: spoofed
	// new flow: <nil>
	// real client kept: true evicted: 1
}
