package flowtable

import (
	"encoding/binary"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// sources counts the flows of each source address, for the per-source limit.
// A source is an address in 16-byte form, so an IPv4 client counts the same
// whether a socket reports it as IPv4 or IPv4-mapped IPv6. A source's flows
// spread over every shard of the table (the shard depends
// on the whole 5-tuple, so that one busy client does not make one hot
// shard), so the counts live apart, sharded by source address. Only flow
// creation and removal use them, never lookups.
type sources struct {
	max    int32
	seed   uint64
	shards []sourceShard
}

type sourceShard struct {
	mu sync.Mutex         // guards n
	n  map[[16]byte]int32 // flows (live and pending) per source; no zero counts
	_  [cacheLine - 16]byte
}

func newSources(shards int, max int32, seed uint64) *sources {
	s := &sources{max: max, seed: seed, shards: make([]sourceShard, shards)}
	for i := range s.shards {
		s.shards[i].n = make(map[[16]byte]int32)
	}
	return s
}

func (s *sources) shard(a [16]byte) *sourceShard {
	var b [24]byte
	binary.LittleEndian.PutUint64(b[:8], s.seed)
	copy(b[8:], a[:])
	return &s.shards[xxhash.Sum64(b[:])&uint64(len(s.shards)-1)]
}

// acquire counts one more flow for source a, or reports that a is at its
// limit.
func (s *sources) acquire(a [16]byte) bool {
	sh := s.shard(a)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	n := sh.n[a]
	if n >= s.max {
		return false
	}
	sh.n[a] = n + 1
	return true
}

// release counts one flow less for source a.
func (s *sources) release(a [16]byte) {
	sh := s.shard(a)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if n := sh.n[a]; n > 1 {
		sh.n[a] = n - 1
	} else {
		delete(sh.n, a)
	}
}

// count returns the flows of source a.
func (s *sources) count(a [16]byte) int {
	sh := s.shard(a)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return int(sh.n[a])
}
