package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/tracing"
)

func main() {
	endpoint := flag.String("otlp", "", "an OTLP collector's host:port; none: spans are printed")
	protocol := flag.String("protocol", "grpc", "grpc or http")
	flag.Parse()
	if err := run(context.Background(), *endpoint, *protocol, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run puts a load balancer traced with OpenTelemetry in front of a target
// that fails its connections and one that answers, sends it a request (the
// first target refuses it: a retry), and prints or exports the spans.
func run(ctx context.Context, endpoint, protocol string, out io.Writer) error {
	var parents []string // the traceparent the target got
	var mu sync.Mutex    // guards parents
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		parents = append(parents, r.Header.Get("Traceparent"))
		mu.Unlock()
		io.WriteString(w, "ok\n")
	}))
	defer target.Close()
	refused, err := closedAddr()
	if err != nil {
		return err
	}

	// The tracer provider: OTLP to a collector, or printed here.
	var tp *sdktrace.TracerProvider
	printer := &printer{out: out}
	if endpoint != "" {
		tp, err = tracing.NewProvider(ctx, tracing.Config{Endpoint: endpoint, Protocol: protocol, SampleRatio: 1, ServiceName: "edge"})
		if err != nil {
			return err
		}
	} else {
		tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(printer))
	}
	defer tp.Shutdown(context.Background())

	l, err := lb.New(
		lb.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		lb.WithObserver(tracing.New(tp)),
		lb.WithListener("web", lb.HTTP, "127.0.0.1:0", lb.WithForwardTo("app")),
		lb.WithTargetGroup("app", lb.HTTP,
			lb.WithTarget(refused, lb.WithTargetID("down"), lb.WithWeight(100)),
			lb.WithTarget(target.Listener.Addr().String(), lb.WithTargetID("up"), lb.WithWeight(1)),
			lb.WithoutHealthCheck()),
	)
	if err != nil {
		return err
	}
	if err := l.Start(); err != nil {
		return err
	}
	front, _ := l.Addr("web")
	resp, err := http.Get("http://" + front.String() + "/cart")
	if err != nil {
		return err
	}
	resp.Body.Close()
	// Close ends every request, and with it every span.
	if err := l.Close(); err != nil {
		return err
	}
	mu.Lock()
	fmt.Fprintf(out, "status %d; the target got traceparent %s\n", resp.StatusCode, parents)
	mu.Unlock()
	return nil
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// printer is a span exporter that prints each span's kind, name, parent
// and attributes.
type printer struct {
	mu  sync.Mutex // guards out
	out io.Writer
}

func (p *printer) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range spans {
		var attrs []string
		for _, kv := range s.Attributes() {
			attrs = append(attrs, string(kv.Key)+"="+kv.Value.String())
		}
		parent := "-"
		if s.Parent().IsValid() {
			parent = s.Parent().SpanID().String()
		}
		fmt.Fprintf(p.out, "%s span %q id=%s parent=%s %s\n", s.SpanKind(), s.Name(), s.SpanContext().SpanID(), parent, strings.Join(attrs, " "))
	}
	return nil
}

func (p *printer) Shutdown(context.Context) error { return nil }
