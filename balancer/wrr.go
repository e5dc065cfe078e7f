package balancer

import "container/heap"

// buildSchedule returns one cycle of smooth weighted round-robin: a sequence
// of positions into weights in which position i appears weights[i]/g times,
// g being the greatest common divisor of the non-zero weights. Positions
// whose weight is 0 never appear. Picking then costs one atomic increment and
// one read of the cycle, whatever the number of targets.
//
// Smoothness: every target's appearances are evenly spaced in "virtual time".
// Target j of the n targets sharing normalised weight w owns the points
// (j + n·t + ½)/(w·n), t = 0..w-1, of the unit interval: consecutive
// appearances of one target are exactly 1/w apart, and targets of equal weight
// are staggered inside each 1/w step. The cycle is the merge of all points in
// time order. Weights 5,1,1 give a b a a a c a: the heavy target never runs
// five times in a row, even across the wrap.
//
// Targets of equal weight form one class, and a class's points form a single
// arithmetic progression, so the merge is a heap of at most MaxWeight classes:
// O(S log MaxWeight) for a cycle of length S. Ties between classes go to the
// heavier class, then to the lower position, so the cycle is deterministic.
func buildSchedule(weights []int) []uint32 {
	g := 0
	for _, w := range weights {
		if w > 0 {
			g = gcd(g, w)
		}
	}
	if g == 0 {
		return nil
	}
	var byWeight [MaxWeight + 1][]uint32
	total := 0
	for i, w := range weights {
		if w <= 0 {
			continue
		}
		byWeight[w/g] = append(byWeight[w/g], uint32(i))
		total += w / g
	}
	h := make(wrrHeap, 0, MaxWeight)
	for w := MaxWeight; w >= 1; w-- {
		if m := byWeight[w]; len(m) > 0 {
			h = append(h, &wrrClass{members: m, w: uint64(w), n: uint64(len(m)), l: uint64(w) * uint64(len(m))})
		}
	}
	heap.Init(&h)
	out := make([]uint32, 0, total)
	for len(h) > 0 {
		c := h[0]
		out = append(out, c.members[c.k%c.n])
		c.k++
		if c.k == c.l {
			heap.Pop(&h)
		} else {
			heap.Fix(&h, 0)
		}
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// wrrClass is the arithmetic progression of virtual-time points owned by the
// targets of one normalised weight: point k sits at (2k+1)/(2l).
type wrrClass struct {
	members []uint32 // positions, ascending
	w, n, l uint64   // weight, len(members), w·n points per cycle
	k       uint64   // next point
}

type wrrHeap []*wrrClass

func (h wrrHeap) Len() int { return len(h) }

// Less orders by the time of the next point, (2k+1)/(2l), compared exactly in
// integers; ties go to the heavier class so the order is total.
func (h wrrHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	x, y := (2*a.k+1)*b.l, (2*b.k+1)*a.l
	if x != y {
		return x < y
	}
	return a.w > b.w
}
func (h wrrHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *wrrHeap) Push(x any)   { *h = append(*h, x.(*wrrClass)) }
func (h *wrrHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
