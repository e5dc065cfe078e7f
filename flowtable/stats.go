package flowtable

import "sync/atomic"

// Stats is a snapshot of a table's counters, cheap to take: it reads a few
// atomics per shard and takes no lock. Each counter is exact, but counters
// read while flows come and go may be from slightly different moments.
type Stats struct {
	// TCP and UDP count the flows of each protocol, Total both.
	TCP   Counters `json:"tcp"`
	UDP   Counters `json:"udp"`
	Total Counters `json:"total"`
	// MaxFlows is the table's capacity (WithMaxFlows): when ActiveFlowCount
	// plus creations in progress reach it, new flows are refused.
	MaxFlows int `json:"max_flows"`
	// MaxFlowsPerSource is the per-source limit, 0 for none.
	MaxFlowsPerSource int `json:"max_flows_per_source"`
	// Unreplied is the number of flows on probation now (see
	// WithUnrepliedTimeout): the first to be evicted. A flow that met the
	// rule to leave probation leaves the count when a sweep or an
	// eviction next looks at it.
	Unreplied int `json:"unreplied"`
}

// Counters are a table's flow counters, named as the reference load
// balancer's metrics. Every flow made is eventually counted once more, as
// expired, deleted or evicted, so NewFlowCount = ActiveFlowCount +
// ExpiredFlowCount + DeletedFlowCount + EvictedFlowCount.
type Counters struct {
	// NewFlowCount counts flows made since the table was made.
	NewFlowCount uint64 `json:"new_flow_count"`
	// ActiveFlowCount is the number of flows in the table now.
	ActiveFlowCount uint64 `json:"active_flow_count"`
	// RejectedFlowCount counts new flows refused because the table was full
	// (ErrFull).
	RejectedFlowCount uint64 `json:"rejected_flow_count"`
	// RejectedSourceFlowCount counts new flows refused because their source
	// had its maximum number of flows (ErrSourceLimit).
	RejectedSourceFlowCount uint64 `json:"rejected_source_flow_count"`
	// ExpiredFlowCount counts flows removed by their idle timeout.
	ExpiredFlowCount uint64 `json:"expired_flow_count"`
	// DeletedFlowCount counts flows removed by Delete.
	DeletedFlowCount uint64 `json:"deleted_flow_count"`
	// EvictedFlowCount counts unreplied flows removed to make room for
	// new ones (see WithUnrepliedTimeout and Evict).
	EvictedFlowCount uint64 `json:"evicted_flow_count"`
}

// counters are one shard's counters for one protocol, read without a lock
// by Stats. The number of active flows is not kept: it is created minus
// expired minus deleted, which saves two atomic writes per flow.
type counters struct {
	created, expired, deleted, rejected, rejectedSource, evicted atomic.Uint64
}

// active returns the number of live flows the counters account for. A flow
// is counted created before it becomes visible and removed only after, and
// the removals are read first, so the difference never goes below 0 (the
// clamp is a guard); read while flows come and go, it may count a flow
// being made or removed.
func (c *counters) active() uint64 {
	removed := c.expired.Load() + c.deleted.Load() + c.evicted.Load()
	created := c.created.Load()
	if created < removed {
		return 0
	}
	return created - removed
}

func (c *Counters) add(o Counters) {
	c.NewFlowCount += o.NewFlowCount
	c.ActiveFlowCount += o.ActiveFlowCount
	c.RejectedFlowCount += o.RejectedFlowCount
	c.RejectedSourceFlowCount += o.RejectedSourceFlowCount
	c.ExpiredFlowCount += o.ExpiredFlowCount
	c.DeletedFlowCount += o.DeletedFlowCount
	c.EvictedFlowCount += o.EvictedFlowCount
}

// Stats returns a snapshot of the table's counters.
func (t *Table[V]) Stats() Stats {
	var per [numProtos]Counters
	for i := range t.shards {
		for p := range per {
			c := &t.shards[i].cnt[p]
			per[p].add(Counters{
				NewFlowCount:            c.created.Load(),
				ActiveFlowCount:         c.active(),
				RejectedFlowCount:       c.rejected.Load(),
				RejectedSourceFlowCount: c.rejectedSource.Load(),
				ExpiredFlowCount:        c.expired.Load(),
				DeletedFlowCount:        c.deleted.Load(),
				EvictedFlowCount:        c.evicted.Load(),
			})
		}
	}
	st := Stats{
		TCP:               per[tcpIndex],
		UDP:               per[udpIndex],
		MaxFlows:          t.cfg.maxFlows,
		MaxFlowsPerSource: t.cfg.maxPerSource,
		Unreplied:         int(t.probation.Load()),
	}
	st.Total.add(st.TCP)
	st.Total.add(st.UDP)
	return st
}
