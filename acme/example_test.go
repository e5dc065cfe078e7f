package acme_test

import (
	"context"
	"fmt"
	"log"

	"github.com/lbkit/lbkit/acme"
	"github.com/lbkit/lbkit/lb"
)

// Example gives an HTTPS listener certificates from Let's Encrypt. (Not
// run: it needs the name to resolve to this host and port 443; the tests
// run the same against Pebble.)
func Example() {
	m, err := acme.New(acme.Config{
		Domains: []string{"shop.example.com"},
		Email:   "ops@example.com",
		CA:      acme.LetsEncrypt,
		Storage: "/var/lib/lbkit/acme", // share it between nodes
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	l, err := lb.New(
		lb.WithListener("web", lb.HTTPS, ":443", lb.WithForwardTo("app"), lb.WithCertificatesFrom(m)),
		lb.WithTargetGroup("app", lb.HTTP, lb.WithTarget("10.0.0.7:8080")),
	)
	if err != nil {
		log.Fatal(err)
	}
	if err := l.Start(); err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	addr, _ := l.Addr("web")
	if err := m.Start(context.Background(), addr.String()); err != nil {
		log.Fatal(err)
	}
	// Diagnose shows each certificate's expiry and renewal errors.
	for _, c := range l.Diagnose(lb.Query{}).Listeners[0].Certificates {
		fmt.Println(c.Names, c.NotAfter, c.Error)
	}
}

// ExampleConfig_Validate shows that on-demand issuance takes an explicit
// allow-list of names, and every problem is reported at once.
func ExampleConfig_Validate() {
	c := acme.Config{Domains: []string{"*.example.com", "192.0.2.1"}, OnDemand: []string{"*.shop.example.com"}, CA: "http://ca"}
	fmt.Println(c.Validate())
	// Output:
	// acme: domains[0]: "*.example.com" is not a DNS name
	// acme: domains[1]: "192.0.2.1" is an IP address; ACME certificates here are for DNS names
	// acme: ca "http://ca" is not an https:// URL
}
