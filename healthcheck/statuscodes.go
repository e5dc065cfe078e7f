package healthcheck

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Status codes outside 100..599 are not HTTP statuses; a spec naming them is
// a typo, not a wish.
const (
	minStatus = 100
	maxStatus = 599
)

// StatusCodes is a set of expected HTTP status codes, written as a list of
// codes and ranges: "200", "200,202,401", "200-399", "200-299,401". The
// zero StatusCodes contains nothing; HTTPConfig treats an empty spec as
// "200", the reference load balancers' default.
type StatusCodes struct {
	ranges []codeRange // sorted, disjoint and not adjacent: the canonical form
}

type codeRange struct{ lo, hi uint16 }

// ParseStatusCodes parses a comma-separated list of status codes (100..599)
// and inclusive ranges "lo-hi". Spaces around items and dashes are allowed;
// overlapping items are merged. The error, wrapping ErrInvalidOption, names
// the bad items.
func ParseStatusCodes(spec string) (StatusCodes, error) {
	if strings.TrimSpace(spec) == "" {
		return StatusCodes{}, fmt.Errorf("healthcheck: %w: status codes %q: empty, want codes and ranges such as 200,202,401 or 200-399", ErrInvalidOption, spec)
	}
	var (
		rs       []codeRange
		problems []string
		bad      int
	)
	for i, item := range strings.Split(spec, ",") {
		r, err := parseCodeRange(item)
		if err != nil {
			// A long garbage spec must not make a much longer error: name
			// the first few bad items and count the rest.
			if bad++; bad <= 5 {
				problems = append(problems, fmt.Sprintf("item %d %q: %v", i+1, clip(strings.TrimSpace(item)), err))
			}
			continue
		}
		rs = append(rs, r)
	}
	if bad > 5 {
		problems = append(problems, fmt.Sprintf("and %d more bad items", bad-5))
	}
	if len(problems) > 0 {
		return StatusCodes{}, fmt.Errorf("healthcheck: %w: status codes %q: %s (want codes 100..599 and ranges lo-hi, comma-separated)",
			ErrInvalidOption, clip(spec), strings.Join(problems, "; "))
	}
	return StatusCodes{ranges: normalize(rs)}, nil
}

// clip shortens s for an error message.
func clip(s string) string {
	const n = 40
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func parseCodeRange(item string) (codeRange, error) {
	item = strings.TrimSpace(item)
	if item == "" {
		return codeRange{}, errors.New("empty")
	}
	loS, hiS, isRange := strings.Cut(item, "-")
	lo, err := parseCode(strings.TrimSpace(loS))
	if err != nil {
		return codeRange{}, err
	}
	if !isRange {
		return codeRange{lo, lo}, nil
	}
	hi, err := parseCode(strings.TrimSpace(hiS))
	if err != nil {
		return codeRange{}, err
	}
	if lo > hi {
		return codeRange{}, fmt.Errorf("range %d-%d is reversed", lo, hi)
	}
	return codeRange{lo, hi}, nil
}

func parseCode(s string) (uint16, error) {
	if len(s) != 3 || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a 3-digit status code", clip(s))
	}
	n, _ := strconv.Atoi(s) // three digits: cannot fail
	if n < minStatus || n > maxStatus {
		return 0, fmt.Errorf("%d is outside %d..%d", n, minStatus, maxStatus)
	}
	return uint16(n), nil
}

// normalize sorts rs and merges overlapping and adjacent ranges, so equal
// sets have equal representations.
func normalize(rs []codeRange) []codeRange {
	slices.SortFunc(rs, func(a, b codeRange) int { return int(a.lo) - int(b.lo) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && r.lo <= out[n-1].hi+1 {
			out[n-1].hi = max(out[n-1].hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

// Contains reports whether code is in the set.
func (c StatusCodes) Contains(code int) bool {
	for _, r := range c.ranges {
		if code >= int(r.lo) && code <= int(r.hi) {
			return true
		}
	}
	return false
}

// String returns the set in canonical form: sorted, overlapping and adjacent
// items merged ("200-202,401"). ParseStatusCodes of it returns an equal set.
func (c StatusCodes) String() string {
	var b strings.Builder
	for i, r := range c.ranges {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(r.lo)))
		if r.hi != r.lo {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(int(r.hi)))
		}
	}
	return b.String()
}

// IsZero reports whether the set is empty (the zero StatusCodes).
func (c StatusCodes) IsZero() bool { return len(c.ranges) == 0 }
