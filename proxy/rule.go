package proxy

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// maxPatternLen bounds host and path patterns, and so the work a regular
// expression may take to compile.
const maxPatternLen = 1024

// hostPattern is a compiled host condition.
type hostPattern struct {
	src    string // normalised source, "" for any host
	exact  string // exact host; "" unless an exact pattern
	suffix string // ".example.com" for "*.example.com"
}

// parseHostPattern compiles a rule's host condition:
//
//	""                any host
//	"example.com"     that host only (case-insensitive, a trailing dot ignored)
//	"*.example.com"   any subdomain of example.com, at any depth, not
//	                  example.com itself
func parseHostPattern(s string) (hostPattern, error) {
	if s == "" || s == "*" {
		return hostPattern{}, nil
	}
	if len(s) > 253+2 {
		return hostPattern{}, fmt.Errorf("host %q is longer than 253 characters", s)
	}
	h := strings.TrimSuffix(strings.ToLower(s), ".")
	wild := strings.HasPrefix(h, "*.")
	name := h
	if wild {
		name = h[2:]
	}
	if err := validHostname(name); err != nil {
		return hostPattern{}, fmt.Errorf("host %q: %w", s, err)
	}
	if wild {
		return hostPattern{src: h, suffix: h[1:]}, nil
	}
	return hostPattern{src: h, exact: h}, nil
}

// validHostname checks a lower-case DNS name: dot-separated labels of
// letters, digits, '-' and '_', none empty or longer than 63 bytes.
func validHostname(name string) error {
	if name == "" {
		return errors.New("empty name")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return errors.New("empty label")
		}
		if len(label) > 63 {
			return fmt.Errorf("label %q is longer than 63 bytes", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("label %q has the character %q (wildcards go only in the first label, as *.)", label, c)
			}
		}
	}
	return nil
}

// match reports whether host, already normalised by normalizeHost, matches.
func (p *hostPattern) match(host string) bool {
	switch {
	case p.src == "":
		return true
	case p.exact != "":
		return host == p.exact
	default:
		return len(host) > len(p.suffix) && strings.HasSuffix(host, p.suffix)
	}
}

// normalizeHost returns the request's Host without its port, in lower case
// and without a trailing dot, for matching rules and certificates. It
// allocates only when the host has upper-case letters.
func normalizeHost(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	host = strings.TrimPrefix(strings.TrimSuffix(host, "]"), "[")
	host = strings.TrimSuffix(host, ".")
	for i := 0; i < len(host); i++ {
		if c := host[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}

// pathKind is how a path pattern matches.
type pathKind uint8

const (
	pathAny pathKind = iota
	pathExact
	pathPrefix
	pathRegexp
)

// pathPattern is a compiled path condition.
type pathPattern struct {
	src  string
	kind pathKind
	lit  string         // the exact path, or the prefix
	re   *regexp.Regexp // pathRegexp
}

// parsePathPattern compiles a rule's path condition:
//
//	""          any path
//	"/a/b"      exactly /a/b
//	"/a/*"      /a/ and everything under it (the * only at the end)
//	"~^/v[12]/" a regular expression (RE2: linear time whatever the input)
func parsePathPattern(s string) (pathPattern, error) {
	if s == "" {
		return pathPattern{}, nil
	}
	if len(s) > maxPatternLen {
		return pathPattern{}, fmt.Errorf("path pattern of %d bytes is longer than %d", len(s), maxPatternLen)
	}
	if re, ok := strings.CutPrefix(s, "~"); ok {
		c, err := regexp.Compile(re)
		if err != nil {
			return pathPattern{}, fmt.Errorf("path %q: %w", s, err)
		}
		return pathPattern{src: s, kind: pathRegexp, re: c}, nil
	}
	if s[0] != '/' {
		return pathPattern{}, fmt.Errorf("path %q does not start with / (or ~ for a regular expression)", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c == 0x7f {
			return pathPattern{}, fmt.Errorf("path %q has the control or space character %q", s, c)
		}
	}
	if lit, ok := strings.CutSuffix(s, "*"); ok {
		if strings.Contains(lit, "*") {
			return pathPattern{}, fmt.Errorf("path %q: * may only end a prefix", s)
		}
		return pathPattern{src: s, kind: pathPrefix, lit: lit}, nil
	}
	if strings.Contains(s, "*") {
		return pathPattern{}, fmt.Errorf("path %q: * may only end a prefix", s)
	}
	return pathPattern{src: s, kind: pathExact, lit: s}, nil
}

// match reports whether p, a cleaned path (cleanPath), matches.
func (p *pathPattern) match(path string) bool {
	switch p.kind {
	case pathAny:
		return true
	case pathExact:
		return path == p.lit
	case pathPrefix:
		return strings.HasPrefix(path, p.lit)
	default:
		return p.re.MatchString(path)
	}
}

// cleanPath returns the request path rules match on: "." and ".."
// elements resolved and repeated slashes merged, a trailing slash kept, so
// that "/public/../admin" is routed as "/admin" is. It allocates only when
// the path was not clean already.
func cleanPath(p string) string {
	if p == "" || p == "/" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	c := path.Clean(p)
	if p[len(p)-1] == '/' && c != "/" {
		if len(c)+1 == len(p) && p[:len(c)] == c {
			return p // unchanged: no allocation
		}
		c += "/"
	}
	return c
}
