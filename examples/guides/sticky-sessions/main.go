package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lbkit/lbkit/lb"
)

func main() {
	serve := flag.Bool("serve", false, "keep serving after the demonstration, until Ctrl-C")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *serve); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, out io.Writer, serve bool) error {
	names := []string{"a", "b", "c"}
	targets := map[string]*http.Server{}
	events := make(chan lb.HealthEvent, 32)
	check := lb.WithHealthCheck(lb.HealthCheck{Interval: 500 * time.Millisecond, Timeout: 400 * time.Millisecond, UnhealthyThreshold: 2})
	// Two target groups over the same three targets.
	byLBCookie := []lb.GroupOption{check, lb.WithStickiness(lb.Stickiness{Kind: lb.Cookie})}
	byAppCookie := []lb.GroupOption{check, lb.WithStickiness(lb.Stickiness{Kind: lb.AppCookie, CookieName: "JSESSIONID"})}
	for _, name := range names {
		srv, addr, err := startTarget(name)
		if err != nil {
			return err
		}
		defer srv.Close()
		targets[name] = srv
		byLBCookie = append(byLBCookie, lb.WithTarget(addr, lb.WithTargetID(name)))
		byAppCookie = append(byAppCookie, lb.WithTarget(addr, lb.WithTargetID(name)))
	}
	l, err := lb.New(
		lb.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		lb.WithHooks(lb.Hooks{HealthChange: func(e lb.HealthEvent) { events <- e }}),
		lb.WithListener("lb-cookie", lb.HTTP, "127.0.0.1:0", lb.WithForwardTo("web-lb-cookie")),
		lb.WithListener("app-cookie", lb.HTTP, "127.0.0.1:0", lb.WithForwardTo("web-app-cookie")),
		lb.WithTargetGroup("web-lb-cookie", lb.HTTP, byLBCookie...),
		lb.WithTargetGroup("web-app-cookie", lb.HTTP, byAppCookie...),
	)
	if err != nil {
		return err
	}
	if err := l.Start(); err != nil {
		return err
	}
	defer l.Close()
	lbURL := "http://" + addrOf(l, "lb-cookie") + "/"
	appURL := "http://" + addrOf(l, "app-cookie") + "/"
	for serving := 0; serving < 6; {
		e, err := next(events)
		if err != nil {
			return err
		}
		if e.Serving {
			serving++
		}
	}

	// One keep-alive connection, no cookie: every request is balanced on
	// its own. Keep-alive is not stickiness.
	var dials atomic.Int32
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
	defer client.CloseIdleConnections()
	var seq []string
	for range 6 {
		r, err := get(client, lbURL, "")
		if err != nil {
			return err
		}
		seq = append(seq, r.target)
	}
	fmt.Fprintf(out, "no cookie, one keep-alive connection (%d dialed): %s\n", dials.Load(), strings.Join(seq, " "))

	// The load balancer's cookie: the first response sets it, and every
	// request that carries it goes to the same target. This is what
	// `curl -c jar -b jar` does.
	first, err := get(client, lbURL, "")
	if err != nil {
		return err
	}
	cookie := first.setCookie
	if cookie == nil {
		return errors.New("no load-balancer cookie was set")
	}
	fmt.Fprintf(out, "first response: target %s, Set-Cookie: %s=<%d opaque bytes>; Max-Age=%d\n", first.target, cookie.Name, len(cookie.Value), cookie.MaxAge)
	stuck, err := repeat(client, lbURL, cookie.Name+"="+cookie.Value, 6)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "with that cookie: %s\n", stuck)

	// A cookie changed by one character is no cookie: balanced afresh, and
	// a new cookie is set.
	bad := cookie.Name + "=" + tamper(cookie.Value)
	tampered, err := repeat(client, lbURL, bad, 3)
	if err != nil {
		return err
	}
	r, err := get(client, lbURL, bad)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "with a tampered cookie: %s (a new cookie set: %v)\n", tampered, r.setCookie != nil)

	// The session's target turns unhealthy: the session moves, and the
	// response sets a new cookie for the new target.
	// (Both groups check it; wait until both have seen it go.)
	targets[first.target].Close()
	if err := waitDown(events, first.target, "web-lb-cookie", "web-app-cookie"); err != nil {
		return err
	}
	moved, err := get(client, lbURL, cookie.Name+"="+cookie.Value)
	if err != nil {
		return err
	}
	if moved.setCookie == nil {
		return errors.New("no new cookie after the move")
	}
	again, err := repeat(client, lbURL, moved.setCookie.Name+"="+moved.setCookie.Value, 3)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "target %s stopped: the session moved to %s (a new cookie set: %v); with the new cookie: %s\n",
		first.target, moved.target, moved.setCookie != nil, again)

	// The application's cookie: the target that sets a session value gets
	// every request that carries it back.
	login, err := get(client, appURL+"login", "")
	if err != nil {
		return err
	}
	if login.setCookie == nil {
		return errors.New("the application set no cookie")
	}
	session := login.setCookie.Name + "=" + login.setCookie.Value
	fmt.Fprintf(out, "app cookie: /login answered by %s, Set-Cookie: %s\n", login.target, session)
	follow, err := repeat(client, appURL, session, 6)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "with %s: %s\n", session, follow)

	// A value the application never set pins nothing: a client cannot
	// choose its target.
	invented, err := repeat(client, appURL, "JSESSIONID=abcd", 4)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "with JSESSIONID=abcd (never set by a target): %s\n", invented)

	if !serve {
		return nil
	}
	fmt.Fprintf(out, "\nServing until Ctrl-C (target %s is down). Try:\n", first.target)
	fmt.Fprintf(out, "  curl -s -c /tmp/lbkit.jar -b /tmp/lbkit.jar %s   # repeat: always the same target\n", lbURL)
	fmt.Fprintf(out, "  curl -s -i %slogin                                # note the JSESSIONID it sets\n", appURL)
	fmt.Fprintf(out, "  curl -s --cookie \"JSESSIONID=<that value>\" %s  # repeat: always its target\n", appURL)
	<-ctx.Done()
	return nil
}

// reply is what one request got.
type reply struct {
	target    string       // the page's first word: the target's name
	setCookie *http.Cookie // the first cookie the response set, if any
}

// get requests url with an optional Cookie header.
func get(c *http.Client, url, cookie string) (reply, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return reply{}, err
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return reply{}, fmt.Errorf("%s: %s", url, resp.Status)
	}
	name, _, _ := strings.Cut(string(body), ":")
	r := reply{target: name}
	if cs := resp.Cookies(); len(cs) > 0 {
		r.setCookie = cs[0]
	}
	return r, nil
}

// repeat requests url n times with a Cookie header and lists the targets.
func repeat(c *http.Client, url, cookie string, n int) (string, error) {
	var seq []string
	for range n {
		r, err := get(c, url, cookie)
		if err != nil {
			return "", err
		}
		seq = append(seq, r.target)
	}
	return strings.Join(seq, " "), nil
}

// tamper changes one character in the middle of a cookie value.
func tamper(v string) string {
	b := []byte(v)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// startTarget serves a page that names the target; /login also sets the
// application's session cookie.
func startTarget(name string) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	var sessions atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/login" {
			http.SetCookie(w, &http.Cookie{Name: "JSESSIONID", Value: fmt.Sprintf("%s-%d", name, sessions.Add(1))})
		}
		fmt.Fprintf(w, "%s: the page of target %s\n", name, name)
	})}
	go srv.Serve(ln)
	return srv, ln.Addr().String(), nil
}

func addrOf(l *lb.LoadBalancer, listener string) string {
	a, _ := l.Addr(listener)
	return a.String()
}

// waitDown waits until target stops serving in every one of groups.
func waitDown(events <-chan lb.HealthEvent, target string, groups ...string) error {
	left := map[string]bool{}
	for _, g := range groups {
		left[g] = true
	}
	for len(left) > 0 {
		e, err := next(events)
		if err != nil {
			return err
		}
		if e.Target == target && !e.Serving {
			delete(left, e.Group)
		}
	}
	return nil
}

func next(events <-chan lb.HealthEvent) (lb.HealthEvent, error) {
	select {
	case e := <-events:
		return e, nil
	case <-time.After(10 * time.Second):
		return lb.HealthEvent{}, errors.New("no health change within 10s")
	}
}
