package flowtable

import (
	"fmt"
	"math/bits"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lbkit/lbkit/internal/benchcpu"
)

// The benchmarks compare the Table with two baselines measured in the same
// run, doing the same work per flow: a sync.Map, and a map under one
// sync.RWMutex. Each holds a pointer per flow and refreshes the flow's
// last-seen tick on lookup the way Table does (a load, and a store only if
// the tick moved), so all three do what a flow table must.
//
// Keys are split into 64 windows. A window is a run of live keys; "churn"
// makes a new flow at the window's end and deletes the oldest at its start,
// so the number of live flows stays constant. In parallel runs each
// goroutine owns its own windows, so every lookup hits.

// bflow is the per-flow value of every implementation.
type bflow struct {
	seen atomic.Uint64
	id   uint64
}

// flowMap is what the benchmarks need of an implementation.
type flowMap interface {
	lookup(k Key) bool
	create(k Key, id uint64) bool // false if the flow existed
	delete(k Key) bool
}

// benchKey returns the i-th benchmark flow, distinct for i < 2^40.
func benchKey(i uint64) Key {
	a := netip.AddrFrom4([4]byte{127, byte(i >> 16), byte(i >> 8), byte(i)})
	return Key{Proto: UDP, Src: netip.AddrPortFrom(a, uint16(i>>24)), Dst: dst4}
}

type ftImpl struct{ t *Table[*bflow] }

func (m ftImpl) lookup(k Key) bool { _, ok := m.t.Lookup(k); return ok }
func (m ftImpl) create(k Key, id uint64) bool {
	_, c, err := m.t.LoadOrCreate(k, func() (*bflow, error) { return &bflow{id: id}, nil })
	return c && err == nil
}
func (m ftImpl) delete(k Key) bool { _, ok := m.t.Delete(k); return ok }

// baseTick stands for the coarse clock of the baselines; like the Table's
// in the benchmarks, it does not move.
type baseTick struct{ tick atomic.Uint64 }

func (b *baseTick) touch(f *bflow) {
	if now := b.tick.Load(); f.seen.Load() < now {
		f.seen.Store(now)
	}
}

type syncMapImpl struct {
	m sync.Map
	baseTick
}

func (s *syncMapImpl) lookup(k Key) bool {
	v, ok := s.m.Load(k)
	if ok {
		s.touch(v.(*bflow))
	}
	return ok
}
func (s *syncMapImpl) create(k Key, id uint64) bool {
	f := &bflow{id: id}
	f.seen.Store(s.tick.Load())
	_, loaded := s.m.LoadOrStore(k, f)
	return !loaded
}
func (s *syncMapImpl) delete(k Key) bool { _, ok := s.m.LoadAndDelete(k); return ok }

type rwMapImpl struct {
	mu sync.RWMutex // guards m
	m  map[Key]*bflow
	baseTick
}

func (r *rwMapImpl) lookup(k Key) bool {
	r.mu.RLock()
	f := r.m[k]
	if f != nil {
		r.touch(f)
	}
	r.mu.RUnlock()
	return f != nil
}
func (r *rwMapImpl) create(k Key, id uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[k]; ok {
		return false
	}
	f := &bflow{id: id}
	f.seen.Store(r.tick.Load())
	r.m[k] = f
	return true
}
func (r *rwMapImpl) delete(k Key) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.m[k]
	delete(r.m, k)
	return ok
}

var benchImpls = []struct {
	name string
	make func(n int) flowMap
}{
	{"flowtable", func(n int) flowMap {
		t, err := New[*bflow](WithManualSweep(), WithMaxFlows(2*n), WithHashSeed(1))
		if err != nil {
			panic(err)
		}
		return ftImpl{t}
	}},
	{"syncmap", func(int) flowMap { return &syncMapImpl{} }},
	{"rwmutex", func(n int) flowMap { return &rwMapImpl{m: make(map[Key]*bflow)} }},
}

const windows = 64

// workload is a populated implementation and its windows [lo, hi): window w
// holds the live keys w + windows*j for lo[w] <= j < hi[w].
type workload struct {
	m      flowMap
	lo, hi [windows]uint64
}

func newWorkload(m flowMap, n int) *workload {
	w := &workload{m: m}
	per := uint64(n / windows)
	for i := range windows {
		w.hi[i] = per
		for j := range per {
			if !m.create(benchKey(uint64(i)+windows*j), j) {
				panic("create failed")
			}
		}
	}
	return w
}

// rng is a per-goroutine xorshift generator: a few instructions, no
// allocation, the same cost for every implementation.
type rng uint64

func (r *rng) next() uint64 {
	x := uint64(*r)
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	*r = rng(x)
	return x
}

// below returns a number in [0, n) without a division.
func (r *rng) below(n uint64) uint64 {
	hi, _ := bits.Mul64(r.next(), n)
	return hi
}

// lookup looks up a random live key of window w.
func (w *workload) lookup(r *rng, win int) bool {
	j := w.lo[win] + r.below(w.hi[win]-w.lo[win])
	return w.m.lookup(benchKey(uint64(win) + windows*j))
}

// churn makes a new flow at the end of window win and deletes its oldest.
func (w *workload) churn(win int) bool {
	ok := w.m.create(benchKey(uint64(win)+windows*w.hi[win]), w.hi[win])
	w.hi[win]++
	ok = w.m.delete(benchKey(uint64(win)+windows*w.lo[win])) && ok
	w.lo[win]++
	return ok
}

// BenchmarkTable measures, for each implementation at 10^4 and 10^6 live
// flows, serially and with RunParallel:
//   - op=lookup: a lookup that hits, refreshing last-seen;
//   - op=create_delete: one new flow and one deletion;
//   - op=mixed: 90 % lookups, 10 % churn (a create and a delete).
//
// Only one implementation's flows are alive at a time, so that the garbage
// collector's work is each one's own.
func BenchmarkTable(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		for _, im := range benchImpls {
			var w *workload // built by the first sub-benchmark that runs, outside its timing
			get := func() *workload {
				if w == nil {
					w = newWorkload(im.make(n), n)
				}
				return w
			}
			for _, op := range []string{"lookup", "create_delete", "mixed"} {
				for _, mode := range []string{"serial", "parallel"} {
					name := fmt.Sprintf("impl=%s/flows=%s/op=%s/mode=%s", im.name, sizeName(n), op, mode)
					b.Run(name, func(b *testing.B) { get().run(b, op, mode) })
				}
			}
			if w != nil {
				if ft, ok := w.m.(ftImpl); ok {
					_ = ft.t.Close()
				}
				w = nil
				runtime.GC()
			}
		}
	}
}

func sizeName(n int) string {
	e := 0
	for ; n >= 10 && n%10 == 0; n /= 10 {
		e++
	}
	return fmt.Sprintf("%de%d", n, e)
}

func (w *workload) run(b *testing.B, op, mode string) {
	b.ReportAllocs()
	do := func(r *rng, win int) bool {
		switch op {
		case "lookup":
			return w.lookup(r, win)
		case "create_delete":
			return w.churn(win)
		}
		if r.below(10) == 0 {
			return w.churn(win)
		}
		return w.lookup(r, win)
	}
	// cpu-ns/op (benchcpu) is the steadier figure on a shared machine.
	if mode == "serial" {
		defer benchcpu.Measure(b)()
		r := rng(0x9e3779b97f4a7c15)
		win := 0
		for b.Loop() {
			if !do(&r, win) {
				b.Fatal("operation failed")
			}
			win = (win + 1) % windows
		}
		return
	}
	var ids atomic.Int64
	goroutines := runtime.GOMAXPROCS(0) // RunParallel's default
	if goroutines > windows {
		b.Skip("more goroutines than windows")
	}
	b.ResetTimer()
	defer benchcpu.Measure(b)()
	b.RunParallel(func(pb *testing.PB) {
		id := int(ids.Add(1) - 1)
		r := rng(0x9e3779b97f4a7c15 ^ uint64(id+1)*0xbf58476d1ce4e5b9)
		win := id // this goroutine's windows: id, id+goroutines, ...
		for pb.Next() {
			if !do(&r, win) {
				panic("operation failed")
			}
			if win += goroutines; win >= windows {
				win = id
			}
		}
	})
}

// BenchmarkMemory reports the heap each implementation takes per flow
// beyond the 8-byte value, and in all (MiB, live heap after a collection;
// sys-MiB, all the memory the process has obtained from the OS), at 10^6
// flows, and the Table's at 10^7. Run it with -benchtime=1x: each
// iteration builds the whole table.
func BenchmarkMemory(b *testing.B) {
	measure := func(b *testing.B, n int, build func() any) {
		for b.Loop() {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			m := build()
			runtime.GC()
			runtime.ReadMemStats(&after)
			runtime.KeepAlive(m)
			total := after.HeapAlloc - before.HeapAlloc
			b.ReportMetric(float64(total)/float64(n)-8, "B/flow")
			b.ReportMetric(float64(total)/(1<<20), "MiB")
			b.ReportMetric(float64(after.Sys)/(1<<20), "sys-MiB") // all the process got from the OS
		}
	}
	for _, n := range []int{1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("impl=flowtable/flows=%s", sizeName(n)), func(b *testing.B) {
			measure(b, n, func() any {
				t, err := New[uint64](WithManualSweep(), WithMaxFlows(n), WithHashSeed(1))
				if err != nil {
					b.Fatal(err)
				}
				for i := range n {
					if _, _, err := t.LoadOrCreate(benchKey(uint64(i)), value(uint64(i))); err != nil {
						b.Fatal(err)
					}
				}
				return t
			})
		})
		if n > 1_000_000 {
			continue
		}
		for _, im := range benchImpls[1:] {
			b.Run(fmt.Sprintf("impl=%s/flows=%s", im.name, sizeName(n)), func(b *testing.B) {
				measure(b, n, func() any {
					m := im.make(n)
					for i := range n {
						m.create(benchKey(uint64(i)), uint64(i))
					}
					return m
				})
			})
		}
	}
}
