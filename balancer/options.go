package balancer

import (
	"errors"
	"fmt"
	"math/rand/v2"
)

// DefaultExactLimit is the largest number of eligible targets for which
// LeastConnections scans every target; above it, it compares two weighted
// random choices.
const DefaultExactLimit = 16

// Option configures a Balancer built by New.
type Option func(*config)

// config holds what New was given. It is fixed for the Balancer's life except
// for the algorithm, which SetAlgorithm changes.
type config struct {
	algo       Algorithm
	targets    []Target
	maglevSize uint32 // 0: grow with the targets from DefaultMaglevSize
	exactLimit int
	rand       func() uint64
}

// WithAlgorithm sets the picking algorithm. Default: RoundRobin.
func WithAlgorithm(a Algorithm) Option { return func(c *config) { c.algo = a } }

// WithTargets sets the initial targets. Default: none.
func WithTargets(ts ...Target) Option {
	return func(c *config) { c.targets = append(c.targets, ts...) }
}

// WithMaglevSize fixes the size of the Maglev table used by SourceIPHash and
// KeyHash. It must be a prime; keep it at least 100 times the number of
// targets for a balance within 1%. Default: DefaultMaglevSize, grown to the
// next size of a fixed list of primes whenever the targets (of any weight and
// health) exceed size/100; every node computes the same size from the same
// targets. Adding or removing the target that crosses such a step rebuilds
// the table on another size, which moves most clients; a fixed size keeps
// the "at most 1 % of the others move" bound across every change.
func WithMaglevSize(m uint32) Option { return func(c *config) { c.maglevSize = m } }

// WithExactLimit sets the largest number of eligible targets for which
// LeastConnections compares every target (exact); above it, it takes the
// better of two weighted random choices. Default: DefaultExactLimit.
func WithExactLimit(n int) Option { return func(c *config) { c.exactLimit = n } }

// WithRand sets the source of random numbers used by Random and by
// LeastConnections above the exact limit. It is called concurrently from
// every picking goroutine and must be safe for that. Default: the
// lock-free math/rand/v2.Uint64. Tests use it to make picks reproducible.
func WithRand(f func() uint64) Option { return func(c *config) { c.rand = f } }

// validate checks the configuration, every problem at once.
func (c *config) validate() error {
	var errs []error
	if !c.algo.valid() {
		errs = append(errs, fmt.Errorf("%w: algorithm %d is unknown", ErrInvalidOption, c.algo))
	}
	if c.maglevSize != 0 && (c.maglevSize < 3 || !isPrime(c.maglevSize)) {
		errs = append(errs, fmt.Errorf("%w: maglev size %d is not a prime ≥ 3", ErrInvalidOption, c.maglevSize))
	}
	if c.exactLimit < 0 {
		errs = append(errs, fmt.Errorf("%w: exact limit %d is negative", ErrInvalidOption, c.exactLimit))
	}
	if err := validateTargets(c.targets); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// withDefaults fills what the user left unset.
func (c *config) withDefaults() {
	if c.exactLimit == 0 {
		c.exactLimit = DefaultExactLimit
	}
	if c.rand == nil {
		c.rand = rand.Uint64
	}
}

func isPrime(n uint32) bool {
	if n < 2 {
		return false
	}
	for d := uint32(2); uint64(d)*uint64(d) <= uint64(n); d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}
