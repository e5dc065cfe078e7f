package balancer

import "errors"

var (
	// ErrNoTarget is returned by Pick when no target is both Healthy and of
	// weight above 0. It is returned unwrapped so that Pick never allocates;
	// callers wrap it with their own context (the HTTP proxy answers 503).
	ErrNoTarget = errors.New("balancer: no healthy target with weight > 0")

	// ErrInvalidTarget is wrapped by every error about a target's fields
	// (empty ID, malformed address, weight out of range).
	ErrInvalidTarget = errors.New("invalid target")

	// ErrDuplicateTarget is wrapped when two targets share an ID.
	ErrDuplicateTarget = errors.New("duplicate target")

	// ErrUnknownTarget is wrapped when a change names an ID the balancer
	// does not hold.
	ErrUnknownTarget = errors.New("unknown target")

	// ErrInvalidOption is wrapped by every error about a balancer option
	// (unknown algorithm, table size that is not a prime, ...).
	ErrInvalidOption = errors.New("invalid option")
)
