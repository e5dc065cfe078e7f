package lb

import (
	"strconv"
	"strings"
)

// Protocol is the protocol of a listener (what clients speak to the load
// balancer) or of a target group (what the load balancer speaks to targets).
type Protocol uint8

const (
	// TCP forwards TCP connections byte for byte (L4).
	TCP Protocol = iota + 1
	// UDP forwards datagrams, a flow per client address (L4).
	UDP
	// TLS is TCP with TLS: a listener terminates TLS and forwards the
	// plaintext to a TCP group, or re-encrypts to a TLS group.
	TLS
	// HTTP proxies HTTP requests (L7).
	HTTP
	// HTTPS is HTTP over TLS: a listener terminates TLS (certificates chosen
	// by SNI); a group speaks HTTPS to its targets (end-to-end encryption).
	HTTPS
)

var protocolNames = [...]string{TCP: "tcp", UDP: "udp", TLS: "tls", HTTP: "http", HTTPS: "https"}

// String returns the protocol's lower-case name, e.g. "https".
func (p Protocol) String() string {
	if p >= TCP && int(p) < len(protocolNames) {
		return protocolNames[p]
	}
	return "protocol(" + strconv.Itoa(int(p)) + ")"
}

func (p Protocol) valid() bool { return p >= TCP && int(p) < len(protocolNames) }

// l7 reports whether the protocol is HTTP or HTTPS.
func (p Protocol) l7() bool { return p == HTTP || p == HTTPS }

// tls reports whether the protocol carries TLS.
func (p Protocol) tls() bool { return p == TLS || p == HTTPS }

// ParseProtocol returns the Protocol named s (case-insensitive): "tcp",
// "udp", "tls", "http" or "https".
func ParseProtocol(s string) (Protocol, error) {
	for i, n := range protocolNames {
		if i > 0 && strings.EqualFold(n, s) {
			return Protocol(i), nil
		}
	}
	return 0, invalidf("protocol %q is not one of tcp, udp, tls, http, https", s)
}

// MarshalText implements encoding.TextMarshaler.
func (p Protocol) MarshalText() ([]byte, error) {
	if !p.valid() {
		return nil, invalidf("protocol %d is unknown", p)
	}
	return []byte(p.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Protocol) UnmarshalText(b []byte) error {
	v, err := ParseProtocol(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// forwards reports whether a listener of protocol l may forward to a group
// of protocol g: TCP→TCP, UDP→UDP, TLS→TCP or TLS, HTTP→HTTP, HTTPS→HTTP or
// HTTPS, as the reference load balancers allow.
func forwards(l, g Protocol) bool {
	switch l {
	case TCP:
		return g == TCP
	case UDP:
		return g == UDP
	case TLS:
		return g == TCP || g == TLS
	case HTTP:
		return g == HTTP
	case HTTPS:
		return g == HTTP || g == HTTPS
	}
	return false
}
