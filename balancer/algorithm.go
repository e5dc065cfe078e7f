package balancer

import (
	"fmt"
	"strconv"
)

// Algorithm selects how a Balancer picks among its eligible targets.
type Algorithm uint8

const (
	// RoundRobin is smooth weighted round-robin: over every cycle each target
	// is picked in proportion to its weight, and heavy targets are spread out
	// rather than picked in runs (weights 5,1,1 never give five in a row).
	// A pick is one atomic increment and a table read, whatever the number of
	// targets.
	RoundRobin Algorithm = iota

	// LeastConnections picks the target with the fewest active picks per
	// unit of weight, counting (active+1)/weight; ties go round-robin. Every
	// Pick must be released with Pick.Done. Exact up to the configured exact
	// limit (WithExactLimit, default 16 targets); above it, the better of two
	// weighted random choices.
	LeastConnections

	// SourceIPHash maps the client IP (PickInfo.Source) through a Maglev
	// consistent-hash table, so one client keeps reaching the same target and
	// several balancer nodes with the same targets agree without talking.
	SourceIPHash

	// KeyHash maps an arbitrary key hash (PickInfo.Hash, see HashString and
	// HashBytes) through the same Maglev table: for URI, header or cookie
	// hashing.
	KeyHash

	// Random picks a target at random in proportion to its weight.
	Random
)

var algorithmNames = [...]string{
	RoundRobin:       "round_robin",
	LeastConnections: "least_connections",
	SourceIPHash:     "source_ip_hash",
	KeyHash:          "key_hash",
	Random:           "random",
}

// String returns the algorithm's configuration name, e.g. "round_robin".
func (a Algorithm) String() string {
	if int(a) < len(algorithmNames) {
		return algorithmNames[a]
	}
	return "algorithm(" + strconv.Itoa(int(a)) + ")"
}

func (a Algorithm) valid() bool { return int(a) < len(algorithmNames) }

// usesMaglev reports whether the algorithm looks targets up in the Maglev table.
func (a Algorithm) usesMaglev() bool { return a == SourceIPHash || a == KeyHash }

// ParseAlgorithm returns the Algorithm named s, one of "round_robin",
// "least_connections", "source_ip_hash", "key_hash" or "random".
func ParseAlgorithm(s string) (Algorithm, error) {
	for i, n := range algorithmNames {
		if n == s {
			return Algorithm(i), nil
		}
	}
	return 0, fmt.Errorf("%w: algorithm %q is not one of round_robin, least_connections, source_ip_hash, key_hash, random", ErrInvalidOption, s)
}

// MarshalText implements encoding.TextMarshaler.
func (a Algorithm) MarshalText() ([]byte, error) {
	if !a.valid() {
		return nil, fmt.Errorf("%w: algorithm %d is unknown", ErrInvalidOption, a)
	}
	return []byte(a.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *Algorithm) UnmarshalText(b []byte) error {
	v, err := ParseAlgorithm(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}
