package main

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"time"

	"github.com/lbkit/lbkit/acme"
	"github.com/lbkit/lbkit/lb"
)

func main() {
	domain := flag.String("domain", "", "the DNS name to serve (required)")
	email := flag.String("email", "", "the ACME account's contact")
	ca := flag.String("ca", acme.LetsEncryptStaging, "the ACME directory URL")
	caRoot := flag.String("ca-root", "", "a PEM file of the roots that verify the CA (Pebble, a private CA)")
	storage := flag.String("storage", "acme-data", "where certificates, keys and the account are kept")
	addr := flag.String("addr", ":443", "the HTTPS listener's address; the CA validates on port 443")
	flag.Parse()
	if *domain == "" {
		log.Fatal("-domain is required")
	}
	cfg := acme.Config{Domains: []string{*domain}, Email: *email, CA: *ca, Storage: *storage}
	if *caRoot != "" {
		pem, err := os.ReadFile(*caRoot)
		if err != nil {
			log.Fatal(err)
		}
		cfg.TrustedRoots = x509.NewCertPool()
		cfg.TrustedRoots.AppendCertsFromPEM(pem)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, cfg, *addr, nil, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run serves HTTPS on addr in front of a demo target, with certificates
// for cfg.Domains obtained from cfg.CA, until ctx ends. It prints the
// certificates' status once they are obtained. bound, if set, is called
// with the listener's address once it serves (the CA can reach it then).
func run(ctx context.Context, cfg acme.Config, addr string, bound func(string), out io.Writer) error {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "hello over HTTPS\n")
	}))
	defer target.Close()

	// The manager is the HTTPS listener's certificate source.
	m, err := acme.New(cfg)
	if err != nil {
		return err
	}
	defer m.Close()
	l, err := lb.New(
		lb.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		lb.WithListener("web", lb.HTTPS, addr, lb.WithForwardTo("app"), lb.WithCertificatesFrom(m)),
		lb.WithTargetGroup("app", lb.HTTP, lb.WithTarget(target.Listener.Addr().String()), lb.WithoutHealthCheck()),
	)
	if err != nil {
		return err
	}
	if err := l.Start(); err != nil {
		return err
	}
	defer l.Close()

	// Once the listener serves, the manager obtains what storage does not
	// hold: the CA's TLS-ALPN-01 challenge is answered by the listener.
	front, _ := l.Addr("web")
	if bound != nil {
		bound(front.String())
	}
	if err := m.Start(ctx, front.String()); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := m.Wait(wctx); err != nil {
		return err
	}
	for _, s := range l.Diagnose(lb.Query{}).Listeners[0].Certificates {
		fmt.Fprintf(out, "%v: issued by %q, expires %s, renewed after %s\n",
			s.Names, s.Issuer, s.NotAfter.Format(time.DateOnly), s.RenewAfter.Format(time.DateOnly))
	}
	<-ctx.Done()
	return nil
}
