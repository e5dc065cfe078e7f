package sticky

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func scanAll(lines []string, name string) []string {
	sc := scanCookies(lines, name)
	var got []string
	for v, ok := sc.next(); ok; v, ok = sc.next() {
		got = append(got, v)
	}
	return got
}

func TestCookieScanner(t *testing.T) {
	cases := []struct {
		lines []string
		want  []string
	}{
		{nil, nil},
		{[]string{""}, nil},
		{[]string{"n=1"}, []string{"1"}},
		{[]string{" n = 1 ; m=2;n=3"}, []string{" 1", "3"}},   // spaces after '=' are kept, as net/http does
		{[]string{`n="q"`, `n="`, `n=""`}, []string{"q", ""}}, // a lone quote is not a value
		{[]string{"n"}, []string{""}},
		{[]string{"N=1; nn=2; n =3"}, []string{"3"}},
		{[]string{"n=a\\b; n=a\"b; n=a b"}, []string{"a b"}}, // invalid bytes: skipped
		{[]string{";;; n=1 ;;", "x=y", "\tn=2\r\n"}, []string{"1", "2"}},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, scanAll(tc.lines, "n"), "%q", tc.lines)
		assert.Equal(t, fromNetHTTP(tc.lines, "n"), scanAll(tc.lines, "n"), "%q: net/http reads it differently", tc.lines)
	}
}

func TestCookieScannerStopsAtPartLimit(t *testing.T) {
	line := strings.Repeat("x=1;", maxCookieParts) + "n=late"
	assert.Empty(t, scanAll([]string{line}, "n"))
	line = strings.Repeat("x=1;", maxCookieParts-1) + "n=ok"
	assert.Equal(t, []string{"ok"}, scanAll([]string{line}, "n"))
}

// fromNetHTTP returns what net/http reads as the values of the cookies
// called name.
func fromNetHTTP(lines []string, name string) []string {
	r := &http.Request{Header: http.Header{"Cookie": lines}}
	var got []string
	for _, c := range r.CookiesNamed(name) {
		got = append(got, c.Value)
	}
	return got
}

// FuzzCookieScanner checks the allocation-free scanner against net/http on
// arbitrary Cookie headers: the same values, in the same order.
func FuzzCookieScanner(f *testing.F) {
	f.Add("n=1; m=2", "second=3; n=\"4\"", "n")
	f.Add("n", "", "n")
	f.Add(" ;n= ;", "n=\x7f;n=\x00", "n")
	f.Add("a=b", "LBKIT=AQ; LBKIT=\"", "LBKIT")
	f.Fuzz(func(t *testing.T, l1, l2, name string) {
		if !isToken(name) {
			return
		}
		lines := []string{l1, l2}
		if strings.Count(l1, ";")+strings.Count(l2, ";")+2 > maxCookieParts {
			return // net/http reads nothing at all above its cap
		}
		require.Equal(t, fromNetHTTP(lines, name), scanAll(lines, name), "lines %q name %q", lines, name)
	})
}

func TestSetCookieName(t *testing.T) {
	for line, want := range map[string]string{
		"JSESSIONID=abc; Path=/": "JSESSIONID",
		" JSESSIONID =abc":       "JSESSIONID",
		"JSESSIONID":             "JSESSIONID",
		"a=b=c":                  "a",
		"; JSESSIONID=x":         "",
		"":                       "",
	} {
		assert.Equal(t, want, setCookieName(line), "%q", line)
	}
}
