package proxy_test

import (
	"fmt"
	"io"
	"net"
	"time"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/flowtable"
	"github.com/lbkit/lbkit/proxy"
)

// A TCP proxy in front of one echo target on loopback, with a flow table of
// its own that a second listener could share.
func ExampleTCP() {
	// The target: echoes what it reads until EOF.
	target, _ := net.Listen("tcp", "127.0.0.1:0")
	defer target.Close()
	go func() {
		c, err := target.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()

	b, _ := balancer.New(balancer.WithTargets(balancer.Target{ID: "echo", Addr: target.Addr().String(), Weight: 1}))
	flows, _ := proxy.NewFlowTable(flowtable.WithIdleTimeout(flowtable.TCP, 10*time.Minute))
	defer flows.Close()

	p := &proxy.TCP{Flows: flows} // start-up configuration: fields
	// Live settings, which may change while serving: Set methods.
	if err := p.SetUpstream(&proxy.Upstream{Name: "echo", Balancer: b}); err != nil {
		panic(err)
	}
	if err := p.SetTimeouts(proxy.Timeouts{Connect: time.Second, Idle: time.Minute}); err != nil {
		panic(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln) }()

	c, _ := net.Dial("tcp", ln.Addr().String())
	c.Write([]byte("hello"))
	c.(*net.TCPConn).CloseWrite() // the FIN reaches the target
	reply, _ := io.ReadAll(c)
	c.Close()
	fmt.Printf("%s\n", reply)

	p.Close()
	fmt.Println(<-done)
	st := p.Stats()
	fmt.Println("forwarded:", st.Forwarded, "bytes in:", st.BytesIn, "bytes out:", st.BytesOut)
	fmt.Println("TCP flows made:", flows.Stats().TCP.NewFlowCount)
	// Output:
	// hello
	// proxy: closed
	// forwarded: 1 bytes in: 5 bytes out: 5
	// TCP flows made: 1
}

// A UDP proxy: each client address is a flow with its own socket to the
// target; replies come back from the proxy's address.
func ExampleUDP() {
	target, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer target.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := target.ReadFrom(buf)
			if err != nil {
				return
			}
			target.WriteTo(append([]byte("echo: "), buf[:n]...), from)
		}
	}()

	b, _ := balancer.New(balancer.WithTargets(balancer.Target{ID: "echo", Addr: target.LocalAddr().String(), Weight: 1}))
	p := &proxy.UDP{} // a private flow table with the defaults
	p.SetUpstream(&proxy.Upstream{Name: "echo", Balancer: b})
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	done := make(chan error, 1)
	go func() { done <- p.Serve(pc) }()

	c, _ := net.Dial("udp", pc.LocalAddr().String())
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("ping"))
	buf := make([]byte, 1500)
	n, _ := c.Read(buf)
	fmt.Printf("%s (from the proxy's address: %v)\n", buf[:n], c.RemoteAddr().String() == pc.LocalAddr().String())
	c.Close()

	p.Close()
	<-done
	fmt.Println("flows:", p.Stats().Flows)
	// Output:
	// echo: ping (from the proxy's address: true)
	// flows: 1
}
