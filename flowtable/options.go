package flowtable

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"time"
)

// Defaults, from the reference network load balancer (see the package
// documentation).
const (
	// DefaultTCPIdleTimeout is how long a TCP flow may stay idle before it
	// expires.
	DefaultTCPIdleTimeout = 350 * time.Second
	// DefaultUDPIdleTimeout is how long a UDP flow may stay idle before it
	// expires.
	DefaultUDPIdleTimeout = 120 * time.Second
	// DefaultMaxFlows is the number of flows a table holds at most unless
	// WithMaxFlows says otherwise. A table keyed by what clients send must
	// have a bound; at about 100 bytes of overhead per flow this one costs
	// some 100 MB when full.
	DefaultMaxFlows = 1_000_000
	// DefaultSweepInterval is the period of the coarse clock and of expiry
	// sweeps.
	DefaultSweepInterval = time.Second
	// MinSweepInterval is the shortest sweep interval accepted.
	MinSweepInterval = time.Millisecond
	// MaxShards is the largest number of shards accepted.
	MaxShards = 1 << 16
)

// Option configures a Table built by New.
type Option func(*config)

// config holds what New was given. Only the idle timeouts change afterwards
// (SetIdleTimeout), and they live in the Table.
type config struct {
	maxFlows     int
	maxPerSource int
	timeouts     [numProtos]time.Duration
	unreplied    [numProtos]time.Duration // 0: flows start replied
	interval     time.Duration
	shards       int // 0: from GOMAXPROCS
	clock        func() time.Time
	manual       bool
	onExpire     any // func(Key, V) for the table's V, checked by New
	onEvict      any // the same, for evicted flows
	idleCheck    any // func(Key, V) (time.Duration, bool) for the table's V, checked by New
	seed         uint64
	seedSet      bool
	errs         []error // found while applying options (unknown protocol)
}

func defaultConfig() config {
	return config{
		maxFlows: DefaultMaxFlows,
		timeouts: [numProtos]time.Duration{
			tcpIndex: DefaultTCPIdleTimeout,
			udpIndex: DefaultUDPIdleTimeout,
		},
		interval: DefaultSweepInterval,
		clock:    time.Now,
	}
}

// WithMaxFlows sets the largest number of flows the table holds, n >= 1.
// When it is reached LoadOrCreate refuses new flows with ErrFull and counts
// them; established flows are never evicted, except unreplied ones, which
// make room for new flows (WithUnrepliedTimeout). Default: DefaultMaxFlows.
func WithMaxFlows(n int) Option { return func(c *config) { c.maxFlows = n } }

// WithMaxFlowsPerSource sets the largest number of flows one source address
// may hold, so that one client, or an attacker spoofing a few addresses,
// cannot fill the table. Beyond it LoadOrCreate refuses with ErrSourceLimit
// and counts. IPv4 and IPv4-mapped IPv6 forms of an address count as one
// source. Default: 0, no per-source limit.
func WithMaxFlowsPerSource(n int) Option { return func(c *config) { c.maxPerSource = n } }

// WithIdleTimeout sets how long flows of protocol p may stay idle (no Lookup)
// before they expire, d > 0. It is rounded up to a whole number of sweep
// intervals. Defaults: DefaultTCPIdleTimeout for TCP, DefaultUDPIdleTimeout
// for UDP.
func WithIdleTimeout(p Proto, d time.Duration) Option {
	return func(c *config) {
		i := protoIndex(p)
		if i < 0 {
			c.errs = append(c.errs, fmt.Errorf("%w: idle timeout for protocol %s: only tcp and udp are tracked", ErrInvalidOption, p))
			return
		}
		c.timeouts[i] = d
	}
}

// WithUnrepliedTimeout puts new flows of protocol p on probation, as
// conntrack treats UDP: a flow is unreplied until its destination answered
// (the owner calls Ref.Replied) and it still saw traffic 2 s after that
// first answer. Until then its idle timeout is d (or its own, if shorter),
// and it is the first to go when room is needed: when the table is full a
// new flow evicts the unreplied flow whose deadline comes first in a shard
// (counted in EvictedFlowCount), and Evict does the same for an owner's own
// limits. Once two-way it keeps its full idle timeout and is never evicted.
// So spoofed one-datagram flows cost little and cannot push out real ones.
//
// d > 0, rounded up to whole sweep intervals; 0 turns probation off for p
// (its flows are never evicted). Owners that use it must call Ref.Replied,
// so they make their flows with LoadOrCreateRef. Default: 0 for both
// protocols (the proxy package sets 30 s, conntrack's, for UDP).
func WithUnrepliedTimeout(p Proto, d time.Duration) Option {
	return func(c *config) {
		i := protoIndex(p)
		if i < 0 {
			c.errs = append(c.errs, fmt.Errorf("%w: unreplied timeout for protocol %s: only tcp and udp are tracked", ErrInvalidOption, p))
			return
		}
		c.unreplied[i] = d
	}
}

// WithSweepInterval sets the period of the coarse clock and of the expiry
// sweeps, at least MinSweepInterval. A flow expires between its idle timeout
// and its idle timeout plus one interval after its last lookup; a shorter
// interval is more precise and costs a wake-up per interval. Default:
// DefaultSweepInterval.
func WithSweepInterval(d time.Duration) Option { return func(c *config) { c.interval = d } }

// WithShards sets the number of shards, a power of two from 1 to MaxShards.
// Writers (new flows, deletes, expiry) lock one shard; lookups lock nothing.
// More shards mean less contention between writers and shorter pauses when a
// shard's index grows, at about 8 KiB each. Default: 0, meaning 16 times
// GOMAXPROCS rounded up to a power of two, at most 1024.
func WithShards(n int) Option { return func(c *config) { c.shards = n } }

// WithClock sets the clock the table reads when it is made (the origin of
// its coarse clock) and at each tick of its sweeper. Lookups never read it.
// Tests pass a fake clock and drive expiry with Sweep. Default: time.Now.
func WithClock(now func() time.Time) Option { return func(c *config) { c.clock = now } }

// WithManualSweep makes the table start no goroutine: nothing expires until
// the caller calls Sweep, which also advances the coarse clock. Tests use it
// with WithClock to control time exactly; a program that already runs a
// periodic loop can drive several tables from it. Default: off; New starts
// one sweeper goroutine per table, stopped by Close.
func WithManualSweep() Option { return func(c *config) { c.manual = true } }

// WithOnExpire sets the function called for every flow removed because it
// stayed idle past its timeout, with the flow's key and value: the TCP proxy
// closes both connections with RST, the UDP proxy closes the upstream socket.
// It is also called for unreplied flows evicted to make room (see
// WithUnrepliedTimeout and Evict) unless WithOnEvict sets a function of
// their own, and not for flows removed by Delete.
//
// For expired flows it runs on the goroutine that sweeps (the table's
// sweeper, or the caller of Sweep), one flow at a time; for an evicted flow,
// on the goroutine whose LoadOrCreate or Evict evicted it, so calls for
// different flows may run at once. It runs with no lock of the table held,
// so it may call the table's methods except Sweep and Close. It delays the
// sweep or the new flow while it runs, so it should not block. V must be the table's value type, or New
// returns an error. Default: nil, no callback.
func WithOnExpire[V any](f func(k Key, v V)) Option {
	return func(c *config) {
		if f != nil {
			c.onExpire = f
		} else {
			c.onExpire = nil
		}
	}
}

// WithOnEvict sets the function called for an unreplied flow evicted to
// make room (see WithUnrepliedTimeout and Evict), in place of the
// WithOnExpire function, so that an owner can tell the two apart (a flow
// log's "evicted" against "idle_timeout"). It runs where WithOnExpire's
// function runs for evicted flows. V must be the table's value type, or New
// returns an error. Default: nil, evicted flows go to the WithOnExpire
// function.
func WithOnEvict[V any](f func(k Key, v V)) Option {
	return func(c *config) {
		if f != nil {
			c.onEvict = f
		} else {
			c.onEvict = nil
		}
	}
}

// WithHashSeed fixes the seed of the table's key hash. Default: a random
// seed per table, so that clients cannot choose addresses and ports that
// collide in the table (hash flooding). Fixed seeds are for reproducible
// benchmarks and tests.
func WithHashSeed(seed uint64) Option {
	return func(c *config) { c.seed, c.seedSet = seed, true }
}

// validate checks the configuration, every problem at once.
func (c *config) validate() error {
	errs := c.errs
	if c.maxFlows < 1 {
		errs = append(errs, fmt.Errorf("%w: max flows %d is below 1", ErrInvalidOption, c.maxFlows))
	}
	if c.maxPerSource < 0 {
		errs = append(errs, fmt.Errorf("%w: max flows per source %d is negative", ErrInvalidOption, c.maxPerSource))
	}
	intervalOK := c.interval >= MinSweepInterval
	if !intervalOK {
		errs = append(errs, fmt.Errorf("%w: sweep interval %v is below %v", ErrInvalidOption, c.interval, MinSweepInterval))
	}
	for _, p := range []Proto{TCP, UDP} {
		d := c.timeouts[protoIndex(p)]
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%w: %s idle timeout %v is not positive", ErrInvalidOption, p, d))
		} else if intervalOK {
			if _, err := ticksFor(d, c.interval); err != nil {
				errs = append(errs, fmt.Errorf("%s idle timeout: %w", p, err))
			}
		}
	}
	for _, p := range []Proto{TCP, UDP} {
		d := c.unreplied[protoIndex(p)]
		if d < 0 {
			errs = append(errs, fmt.Errorf("%w: %s unreplied timeout %v is negative", ErrInvalidOption, p, d))
		} else if d > 0 && intervalOK {
			if _, err := ticksFor(d, c.interval); err != nil {
				errs = append(errs, fmt.Errorf("%s unreplied timeout: %w", p, err))
			}
		}
	}
	if c.shards != 0 && (c.shards < 1 || c.shards > MaxShards || c.shards&(c.shards-1) != 0) {
		errs = append(errs, fmt.Errorf("%w: shards %d is not a power of two from 1 to %d", ErrInvalidOption, c.shards, MaxShards))
	}
	if c.clock == nil {
		errs = append(errs, fmt.Errorf("%w: clock is nil", ErrInvalidOption))
	}
	return errors.Join(errs...)
}

// withDefaults fills what is derived rather than set.
func (c *config) withDefaults() {
	if c.shards == 0 {
		c.shards = defaultShards(runtime.GOMAXPROCS(0))
	}
	if !c.seedSet {
		c.seed = rand.Uint64()
	}
}

// defaultShards returns 16 shards per processor, rounded up to a power of two
// and capped at 1024: lookups take no lock, so shards only spread writers and
// keep each shard's index small enough that growing it is a short pause.
func defaultShards(procs int) int {
	n := 16 * max(procs, 1)
	n = 1 << bits.Len(uint(n-1))
	return min(n, 1024)
}

// ticksFor converts an idle timeout into whole sweep intervals, rounding up
// so that a flow never expires before its timeout.
func ticksFor(d, interval time.Duration) (uint32, error) {
	if d <= 0 {
		return 0, fmt.Errorf("%w: timeout %v is not positive", ErrInvalidOption, d)
	}
	n := d / interval
	if d%interval != 0 {
		n++
	}
	if n > math.MaxUint32 {
		return 0, fmt.Errorf("%w: timeout %v is more than 2^32-1 sweep intervals of %v", ErrInvalidOption, d, interval)
	}
	return uint32(n), nil
}
