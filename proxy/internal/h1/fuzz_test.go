package h1

import (
	"bytes"
	"errors"
	"net/netip"
	"net/url"
	"testing"
	"unsafe"
)

// The crash fuzz targets check properties that hold for any input: no
// panic; what is accepted lies inside the head; a head parsed at once and
// parsed as it arrives, in pieces, with the Request remembering how far it
// looked, gives the same answer; MaxHeaderBytes is exact.

// within reports whether s is empty or a slice of buf[:n].
func within(s, buf []byte, n int) bool {
	if len(s) == 0 {
		return true
	}
	if len(buf) == 0 {
		return false
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	b := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	return p >= b && p+uintptr(len(s)) <= b+uintptr(n)
}

// splits returns the prefixes of data ending at the offsets the first
// bytes of data choose, then data itself.
func splits(data []byte) []int {
	var ends []int
	k := 0
	for i := 0; i < len(data) && i < 8; i++ {
		k += 1 + int(data[i])%7
		if k < len(data) {
			ends = append(ends, k)
		}
	}
	return append(ends, len(data))
}

func FuzzParseRequest(f *testing.F) {
	for _, c := range requestCases {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lim := Limits{MaxHeaderBytes: 4 << 10, MaxURILength: 1 << 10, MaxHeaders: 20}
		var r Request
		n, err := ParseRequest(data, &r, lim)
		var e *Error
		switch {
		case err == nil:
			if n <= 0 || n > len(data) || n > lim.MaxHeaderBytes {
				t.Fatalf("n = %d of %d", n, len(data))
			}
			for _, s := range [][]byte{r.Method, r.Target, r.Host} {
				if !within(s, data, n) {
					t.Fatalf("slice %q outside the head", s)
				}
			}
			if r.Path != nil && !within(r.Path, data, n) && string(r.Path) != "/" && string(r.Path) != "*" {
				t.Fatalf("path %q outside the head", r.Path)
			}
			for _, h := range r.Headers {
				if !within(h.Name, data, n) || !within(h.Value, data, n) {
					t.Fatalf("field %q outside the head", h.Name)
				}
			}
			if r.Chunked != (r.Framing == FramingChunked) || r.Framing == FramingLength && r.ContentLength <= 0 {
				t.Fatalf("framing %v with Chunked %v, ContentLength %d", r.Framing, r.Chunked, r.ContentLength)
			}
			// Exactly MaxHeaderBytes passes; one byte less does not.
			var r2 Request
			if n2, err := ParseRequest(data, &r2, Limits{MaxHeaderBytes: n, MaxURILength: lim.MaxURILength, MaxHeaders: lim.MaxHeaders}); n2 != n || err != nil {
				t.Fatalf("with MaxHeaderBytes = %d: %d, %v", n, n2, err)
			}
			if n > 1 {
				_, err := ParseRequest(data, &r2, Limits{MaxHeaderBytes: n - 1, MaxURILength: lim.MaxURILength, MaxHeaders: lim.MaxHeaders})
				if !errors.As(err, &e) || e.Status != 431 && e.Status != 414 {
					t.Fatalf("with MaxHeaderBytes = %d: %v, want 431", n-1, err)
				}
			}
		case errors.Is(err, ErrIncomplete):
			if len(data) >= lim.MaxHeaderBytes {
				t.Fatalf("incomplete with %d bytes", len(data))
			}
		case !errors.As(err, &e):
			t.Fatalf("error %T %v", err, err)
		}
		// The same bytes in pieces, with the same Request.
		var inc Request
		var n2 int
		var err2 error
		for _, end := range splits(data) {
			n2, err2 = ParseRequest(data[:end], &inc, lim)
			if !errors.Is(err2, ErrIncomplete) {
				break
			}
		}
		if n2 != n || statusOf(t, err2) != statusOf(t, err) {
			t.Fatalf("in pieces: %d, %v; at once: %d, %v", n2, err2, n, err)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	for _, c := range responseCases {
		f.Add([]byte(c.in), c.method == "HEAD")
	}
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		method := []byte("GET")
		if head {
			method = []byte("HEAD")
		}
		lim := Limits{MaxHeaderBytes: 4 << 10, MaxHeaders: 20}
		var r Response
		n, err := ParseResponse(data, &r, method, lim)
		var e *Error
		switch {
		case err == nil:
			if n <= 0 || n > len(data) {
				t.Fatalf("n = %d of %d", n, len(data))
			}
			if !within(r.Reason, data, n) {
				t.Fatal("reason outside the head")
			}
			for _, h := range r.Headers {
				if !within(h.Name, data, n) || !within(h.Value, data, n) {
					t.Fatalf("field %q outside the head", h.Name)
				}
			}
			if r.Status < 100 || r.Status > 599 {
				t.Fatalf("status %d", r.Status)
			}
			if r.Framing == FramingUntilClose && !r.Close {
				t.Fatal("read until close without Close")
			}
		case errors.Is(err, ErrIncomplete):
			if len(data) >= lim.MaxHeaderBytes {
				t.Fatalf("incomplete with %d bytes", len(data))
			}
		case !errors.As(err, &e) || e.Status != 502:
			t.Fatalf("error %v", err)
		}
		var inc Response
		var n2 int
		var err2 error
		for _, end := range splits(data) {
			n2, err2 = ParseResponse(data[:end], &inc, method, lim)
			if !errors.Is(err2, ErrIncomplete) {
				break
			}
		}
		if n2 != n || statusOf(t, err2) != statusOf(t, err) {
			t.Fatalf("in pieces: %d, %v; at once: %d, %v", n2, err2, n, err)
		}
	})
}

// FuzzChunked checks that Scan and Decode agree, at once and in pieces fed
// as a proxy would (keeping what a call left unconsumed).
func FuzzChunked(f *testing.F) {
	for _, c := range requestCases {
		if i := bytes.Index([]byte(c.in), []byte("chunked\r\n\r\n")); i >= 0 {
			f.Add([]byte(c.in)[i+len("chunked\r\n\r\n"):], uint8(3))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		var c Chunked
		c.MaxTrailerBytes = 256
		n, done, err := c.Scan(data)
		if n < 0 || n > len(data) || done && err != nil {
			t.Fatalf("Scan: %d, %v, %v", n, done, err)
		}
		if err == nil && !done && len(data)-n > maxChunkLine && len(data)-n > c.MaxTrailerBytes {
			t.Fatalf("Scan left %d bytes unconsumed", len(data)-n)
		}
		// Decode, fed in pieces of step bytes.
		var d Chunked
		d.MaxTrailerBytes = 256
		m, pending := 0, 0
		var dn int
		var ddone bool
		var derr error
		for {
			end := min(len(data), m+pending+int(step)+1)
			k, _, dd, e := d.Decode(data[m:end])
			m += k
			pending = end - m
			dn, ddone, derr = m, dd, e
			if e != nil || dd || end == len(data) && k == 0 {
				break
			}
		}
		if derr == nil && !ddone {
			// Drain what is left at once.
			for {
				k, _, dd, e := d.Decode(data[m:])
				m += k
				dn, ddone, derr = m, dd, e
				if e != nil || dd || k == 0 {
					break
				}
			}
		}
		if ddone != done || (derr == nil) != (err == nil) || err == nil && dn != n {
			t.Fatalf("Scan: %d, %v, %v; Decode in pieces: %d, %v, %v", n, done, err, dn, ddone, derr)
		}
		if err == nil && c.Size() != d.Size() {
			t.Fatalf("sizes %d and %d", c.Size(), d.Size())
		}
	})
}

// FuzzAuthority checks the authority rules against net/url and net/netip:
// an authority accepted here is one net/url takes, and an IPv6 literal is
// valid exactly when netip parses it (zones aside).
func FuzzAuthority(f *testing.F) {
	for _, s := range []string{"a", "a:80", "[::1]", "[::1]:443", "[1:2:3:4:5:6:7:8]", "[::ffff:1.2.3.4]", "[1:2]", "a b", "[::1.2.3.04]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if validAuthority([]byte(s), false) {
			if _, err := url.ParseRequestURI("http://" + s + "/"); err != nil {
				t.Fatalf("accepted %q, which net/url refuses: %v", s, err)
			}
		}
		if bytes.ContainsAny([]byte(s), "%") {
			return
		}
		a, err := netip.ParseAddr(s)
		if want := err == nil && a.Is6(); validIPv6([]byte(s)) != want {
			t.Fatalf("validIPv6(%q) = %v, netip says %v (%v)", s, !want, want, err)
		}
	})
}
