package h1

import (
	"strings"
	"testing"
)

func TestEqualFold(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"Content-Length", "content-length", true},
		{"CHUNKED", "chunked", true},
		{"chunked", "chunke", false},
		{"chun\xe2\x84\xaaed", "chunked", false},
		{"[", "{", false}, // 0x5b and 0x7b differ by 0x20 but are not letters
		{"@", "`", false},
		{"", "", true},
	} {
		if got := EqualFold([]byte(c.a), c.b); got != c.want {
			t.Errorf("EqualFold(%q, %q) = %v", c.a, c.b, got)
		}
	}
}

func TestNextToken(t *testing.T) {
	for in, want := range map[string]string{
		"":                    "",
		"close":               "close",
		" a , b,,\tc ,":       "a|b|c",
		",,,":                 "",
		"keep-alive, Upgrade": "keep-alive|Upgrade",
		"a;q=1 , b":           "a;q=1|b",
	} {
		var got []string
		for tok, rest, ok := NextToken([]byte(in)); ok; tok, rest, ok = NextToken(rest) {
			got = append(got, string(tok))
		}
		if strings.Join(got, "|") != want {
			t.Errorf("NextToken(%q): %q, want %q", in, got, want)
		}
	}
	if !HasToken([]byte("keep-alive, CLOSE"), "close") || HasToken([]byte("closed"), "close") {
		t.Error("HasToken")
	}
}

func TestParseContentLength(t *testing.T) {
	for _, c := range []struct {
		in string
		n  int64
		ok bool
	}{
		{"0", 0, true},
		{"007", 7, true},
		{"9223372036854775807", 9223372036854775807, true},
		{"9223372036854775808", 0, false},
		{"99999999999999999999", 0, false},
		{"", 0, false},
		{"+1", 0, false},
		{"-1", 0, false},
		{"1 ", 0, false},
		{"0x1", 0, false},
		{"1,1", 0, false},
	} {
		n, ok := ParseContentLength(c.in)
		if n != c.n || ok != c.ok {
			t.Errorf("ParseContentLength(%q) = %d, %v", c.in, n, ok)
		}
	}
}

func TestKindOf(t *testing.T) {
	for k := KindHost; k <= KindXForwardedPort; k++ {
		name := k.String()
		if got := kindOf([]byte(strings.ToUpper(name))); got != k {
			t.Errorf("kindOf(%q) = %v", strings.ToUpper(name), got)
		}
		if got := kindOf([]byte(name + "x")); got != KindOther {
			t.Errorf("kindOf(%q) = %v", name+"x", got)
		}
	}
	if kindOf([]byte("Hosts")) != KindOther || kindOf([]byte("Trailers")) != KindOther {
		t.Error("kindOf matched a longer name")
	}
}
