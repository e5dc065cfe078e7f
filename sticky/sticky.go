package sticky

import (
	"net/http"
	"net/netip"
	"strconv"
)

// TargetState is what the user says about a remembered target when a lookup
// asks (see WithTargetState). Sticky never imports the balancer: the user's
// function is the only way it learns about targets, which keeps the packages
// apart and lets the same policy follow any source of truth.
type TargetState uint8

const (
	// Usable targets take new and existing sessions.
	Usable TargetState = iota
	// Draining targets (weight 0, or being deregistered) take no new
	// sessions; existing ones continue until the drain ends, that is until
	// the state function says Unusable, unless WithStopOnDrain(true) moves
	// them at once.
	Draining
	// Unusable targets (removed, unhealthy, ejected) take nothing: a lookup
	// that remembers one reports a miss, counted in Stats.Repicks, and the
	// caller picks again and remembers its new choice.
	Unusable
)

// String returns "usable", "draining" or "unusable".
func (s TargetState) String() string {
	switch s {
	case Usable:
		return "usable"
	case Draining:
		return "draining"
	case Unusable:
		return "unusable"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Request is what a policy may key on. It is a struct so that it can grow
// without breaking the Policy interface.
type Request struct {
	// Source is the client's IP address: the peer address at L4, or the
	// client address the HTTP proxy trusts (X-Forwarded-For from a trusted
	// hop, else the peer). A zero Source never matches a SourceIP entry.
	Source netip.Addr
	// Cookies are the values of the request's Cookie header fields at L7,
	// in order; nil at L4. The cookie kinds read them. A caller may pass
	// strings that alias its own buffers: policies keep no reference to
	// them after the call returns.
	Cookies []string
	// TLS reports that the request arrived over TLS: the Cookie kind then
	// marks its cookie Secure.
	TLS bool
}

// HTTPRequest returns the Request of an HTTP request r from the client at
// source.
func HTTPRequest(source netip.Addr, r *http.Request) Request {
	return Request{Source: source, Cookies: r.Header["Cookie"], TLS: r.TLS != nil}
}

// Response is the response header on its way to the client at L7, as a
// policy sees it: the Cookie kind adds its Set-Cookie, the AppCookie kind
// reads the application's. An HTTP front end other than net/http's
// implements it over its own representation; Header adapts an
// http.Header.
type Response interface {
	// SetCookies returns the values of the response's Set-Cookie fields.
	SetCookies() []string
	// AddSetCookie adds a Set-Cookie field with the given value.
	AddSetCookie(value string)
}

// Header is an http.Header as a Response.
type Header http.Header

// SetCookies returns h's Set-Cookie values.
func (h Header) SetCookies() []string { return h["Set-Cookie"] }

// AddSetCookie appends a Set-Cookie value to h.
func (h Header) AddSetCookie(v string) { h["Set-Cookie"] = append(h["Set-Cookie"], v) }

// Policy is session persistence of one kind: SourceIP, Cookie or AppCookie.
// The TCP, UDP and HTTP proxies hold a Policy and never ask which kind it is.
//
// The protocol for one new connection (L4) or request (L7) is:
//
//	id, ok := p.Lookup(r)
//	if !ok {
//		id = pick() // the balancer's choice
//	}
//	... forward to id; at L7, before writing the response header:
//	p.Remember(r, id, sticky.Header(resp.Header)) // nil at L4
//
// A caller that cannot serve a returned id (it no longer knows it, or
// connecting fails) picks again and Remembers the new choice, which moves
// the session. Policies are safe for concurrent use and Lookup never blocks
// on anything but a short per-shard lock and the user's state function.
type Policy interface {
	// Lookup returns the target remembered for r when there is one, it
	// has not expired and its state allows it (Usable, or Draining unless
	// WithStopOnDrain). A hit refreshes the session's duration.
	Lookup(r Request) (id string, ok bool)
	// Remember records that r was sent to target id. resp is the
	// response header on its way to the client, nil at L4: the Cookie kind
	// adds its Set-Cookie there, the AppCookie kind learns from the
	// application's Set-Cookie in it. Call it on every forwarded request
	// or new flow, hit or miss; it is how sessions are created, moved after
	// a re-pick and, for Cookie, refreshed.
	Remember(r Request, id string, resp Response)
}

// Compile-time checks that every kind is a Policy.
var (
	_ Policy = (*SourceIP)(nil)
	_ Policy = (*Cookie)(nil)
	_ Policy = (*AppCookie)(nil)
)

// Stats is a snapshot of a policy's counters, cheap to take. Every kind
// returns the same struct so that callers can add them up; fields a kind
// does not use stay zero.
//
// Every Lookup counts once in Hits or Misses. Repicks and bad cookies are
// misses too, so Hits+Misses is the number of lookups.
type Stats struct {
	// Hits counts lookups that returned a target.
	Hits uint64 `json:"hits"`
	// Misses counts lookups that returned none: nothing remembered, an
	// expired session, a bad cookie, or a remembered target whose state
	// refused it (also counted in Repicks).
	Misses uint64 `json:"misses"`
	// Repicks counts lookups that found a live session whose target was
	// Unusable (or Draining under WithStopOnDrain), so the caller had to
	// pick again.
	Repicks uint64 `json:"repicks"`
	// Remembered counts Remember calls that changed something: a new
	// entry, an entry moved to another target (SourceIP, AppCookie), or a
	// Set-Cookie issued (Cookie).
	Remembered uint64 `json:"remembered"`
	// Refused counts Remember calls that could not be honoured: the table
	// was full of live sessions (SourceIP, AppCookie; established sessions
	// are never evicted to make room), or the target ID was longer than
	// MaxIDLen (Cookie).
	Refused uint64 `json:"refused"`
	// Entries is the number of sessions a table holds now (SourceIP,
	// AppCookie). Stats drops expired entries before counting.
	Entries int `json:"entries"`
	// Expired counts table entries dropped because their duration passed
	// without use (SourceIP, AppCookie). Expired cookies are counted in
	// BadCookies.Expired.
	Expired uint64 `json:"expired"`
	// BadCookies counts cookies treated as absent, by reason (Cookie,
	// AppCookie).
	BadCookies BadCookies `json:"bad_cookies"`
	// StoreHits counts lookups that missed the local table and found the
	// session in the Store (see WithStore); they count in Hits too when
	// the target was usable.
	StoreHits uint64 `json:"store_hits"`
	// StoreWrites counts sessions written to the Store.
	StoreWrites uint64 `json:"store_writes"`
	// StoreErrors counts calls to the Store that failed or timed out; each
	// cost the data path at most the store timeout.
	StoreErrors uint64 `json:"store_errors"`
	// StoreSkipped counts calls not made because the Store had failed
	// within the last second: the local table answered alone.
	StoreSkipped uint64 `json:"store_skipped"`
}

// BadCookies counts cookies that were treated as no cookie at all: the
// request got a fresh pick (and, for Cookie, a new cookie) instead of an
// error.
type BadCookies struct {
	// Tampered: well formed, known key, but the authentication tag does not
	// match (a changed byte, a forged or spliced value).
	Tampered uint64 `json:"tampered"`
	// Truncated: shorter than its own header says.
	Truncated uint64 `json:"truncated"`
	// Oversized: longer than any cookie this policy issues (Cookie) or than
	// the value cap (AppCookie, see WithMaxValueLen), rejected before any
	// decoding or hashing.
	Oversized uint64 `json:"oversized"`
	// Expired: authentic, but its expiry has passed (a replayed cookie, or
	// a client that ignores Max-Age).
	Expired uint64 `json:"expired"`
	// WrongKey: made with a key this policy does not hold, or one retired
	// after its grace period.
	WrongKey uint64 `json:"wrong_key"`
	// Garbage: not base64url, an unknown format version, impossible
	// lengths (Cookie); a Set-Cookie the application sent that cannot be
	// parsed (AppCookie).
	Garbage uint64 `json:"garbage"`
}

// Total returns the number of bad cookies of every reason.
func (b BadCookies) Total() uint64 {
	return b.Tampered + b.Truncated + b.Oversized + b.Expired + b.WrongKey + b.Garbage
}
