package healthcheck

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseStatusCodes(t *testing.T) {
	for spec, want := range map[string]struct {
		canon     string
		in, notIn []int
	}{
		"200":                  {"200", []int{200}, []int{199, 201, 404}},
		"200,202,401":          {"200,202,401", []int{200, 202, 401}, []int{201, 203, 400, 402}},
		"200-399":              {"200-399", []int{200, 302, 399}, []int{199, 400}},
		" 200 - 299 , 401 ":    {"200-299,401", []int{250, 401}, []int{300, 400}},
		"401,200-299,250-300":  {"200-300,401", []int{300, 401}, []int{301}},
		"200,201,202":          {"200-202", []int{201}, []int{203}},
		"100-599":              {"100-599", []int{100, 599}, []int{99, 600}},
		"500,500,500-500":      {"500", []int{500}, []int{501}},
		"204-204,205,300-301,": {"", nil, nil}, // trailing comma: error below
	} {
		got, err := ParseStatusCodes(spec)
		if want.canon == "" {
			require.Error(t, err, spec)
			continue
		}
		require.NoError(t, err, spec)
		assert.Equal(t, want.canon, got.String(), spec)
		for _, c := range want.in {
			assert.True(t, got.Contains(c), "%q contains %d", spec, c)
		}
		for _, c := range want.notIn {
			assert.False(t, got.Contains(c), "%q does not contain %d", spec, c)
		}
	}
}

func TestParseStatusCodesErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"":            "empty, want codes and ranges",
		"  ":          "empty, want codes and ranges",
		"abc":         `item 1 "abc": "abc" is not a 3-digit status code`,
		"200,":        `item 2 "": empty`,
		"200,,201":    `item 2 "": empty`,
		"99":          `"99" is not a 3-digit status code`,
		"600":         "600 is outside 100..599",
		"099":         "99 is outside 100..599",
		"+20":         `"+20" is not a 3-digit status code`,
		"299-200":     "range 299-200 is reversed",
		"200-":        `"" is not a 3-digit status code`,
		"-200":        `"" is not a 3-digit status code`,
		"200-300-400": `"300-400" is not a 3-digit status code`,
		"2OO":         `"2OO" is not a 3-digit status code`,
		"200;201":     `"200;201" is not a 3-digit status code`,
	} {
		_, err := ParseStatusCodes(spec)
		require.ErrorIs(t, err, ErrInvalidOption, spec)
		assert.Contains(t, err.Error(), want, spec)
	}
	// Every bad item is named, up to five, then counted.
	_, err := ParseStatusCodes("x,200,y,z,1,2,3,4")
	require.Error(t, err)
	for _, want := range []string{`item 1 "x"`, `item 3 "y"`, `item 4 "z"`, `item 5 "1"`, `item 6 "2"`, "and 2 more bad items"} {
		assert.Contains(t, err.Error(), want)
	}
	// A huge spec makes a short error.
	_, err = ParseStatusCodes(strings.Repeat("garbage,", 100000))
	require.Error(t, err)
	assert.Less(t, len(err.Error()), 1000)
}

func TestStatusCodesZero(t *testing.T) {
	var c StatusCodes
	assert.True(t, c.IsZero())
	assert.False(t, c.Contains(200))
	assert.Equal(t, "", c.String())
}

// FuzzParseStatusCodes: no input panics; whatever parses has a canonical
// form that parses to the same set and is its own canonical form.
func FuzzParseStatusCodes(f *testing.F) {
	for _, s := range []string{"200", "200,202,401", "200-399", " 200 - 299 , 401 ", "401,200-299,250-300",
		"", ",", "-", "200-", "99", "600", "299-200", "2OO", "200,,201", "100-599", "\x00", "２００"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		c, err := ParseStatusCodes(spec)
		if err != nil {
			if !strings.Contains(err.Error(), "status codes") {
				t.Fatalf("error does not say what it is about: %v", err)
			}
			return
		}
		canon := c.String()
		back, err := ParseStatusCodes(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, spec, err)
		}
		if back.String() != canon {
			t.Fatalf("canonical form not stable: %q -> %q", canon, back.String())
		}
		for code := 0; code <= 700; code++ {
			if c.Contains(code) != back.Contains(code) {
				t.Fatalf("%q and its canonical form %q disagree on %d", spec, canon, code)
			}
			if c.Contains(code) && (code < 100 || code > 599) {
				t.Fatalf("%q contains %d, outside 100..599", spec, code)
			}
		}
	})
}
