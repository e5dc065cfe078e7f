package accesslog

import (
	"context"
	"log/slog"
	"math/rand/v2"
)

// Sampler passes a fraction of the records to its Handler: every record
// that Keep keeps, and of the others each with probability Rate. The
// decisions are independent (Rand), so over many records the share logged
// is Rate whatever their pattern. Set the fields before use.
type Sampler struct {
	// Handler receives the records passed on.
	Handler slog.Handler
	// Rate is the share of ordinary records passed on, 0..1: 0.01 logs
	// one in a hundred. 1 (or more) passes everything.
	Rate float64
	// Keep, if set, says which records are always passed on; nil:
	// KeepErrors.
	Keep func(slog.Record) bool
	// Rand returns a number in [0, 1); nil: math/rand/v2's.
	Rand func() float64
}

// Enabled reports whether the Handler takes records of level l.
func (s *Sampler) Enabled(ctx context.Context, l slog.Level) bool {
	return s.Handler.Enabled(ctx, l)
}

// Handle passes r on if it is kept or drawn.
func (s *Sampler) Handle(ctx context.Context, r slog.Record) error {
	keep := s.Keep
	if keep == nil {
		keep = KeepErrors
	}
	if s.Rate < 1 && !keep(r) {
		rnd := s.Rand
		if rnd == nil {
			rnd = rand.Float64
		}
		if rnd() >= s.Rate {
			return nil
		}
	}
	return s.Handler.Handle(ctx, r)
}

// WithAttrs returns a Sampler over the Handler with attrs.
func (s *Sampler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *s
	c.Handler = s.Handler.WithAttrs(as)
	return &c
}

// WithGroup returns a Sampler over the Handler with a group.
func (s *Sampler) WithGroup(name string) slog.Handler {
	c := *s
	c.Handler = s.Handler.WithGroup(name)
	return &c
}

// KeepErrors keeps the records worth reading whatever the sampling: an
// HTTP request answered 5xx or with an error attribute, a flow closed for
// a reason other than its client or target closing it or its idle
// timeout (refused, reset, an error).
func KeepErrors(r slog.Record) bool {
	keep := false
	r.Attrs(func(a slog.Attr) bool {
		v := a.Value.Resolve()
		switch a.Key {
		case "error":
			keep = true
		case "status":
			keep = intValue(v) >= 500
		case "reason":
			switch v.String() {
			case "client_close", "target_close", "idle_timeout":
			default:
				keep = true
			}
		}
		return !keep
	})
	return keep
}
