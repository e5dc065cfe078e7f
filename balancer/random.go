package balancer

// aliasTable samples positions in proportion to their weights in O(1) with
// one random number (Vose's alias method). It backs Random and the two
// random choices of LeastConnections on large sets.
type aliasTable struct {
	// prob[i] is the chance, scaled to 2^32, of keeping column i rather than
	// taking alias[i].
	prob  []uint32
	alias []uint32
	// pos maps a column to the position it stands for.
	pos []uint32
}

// newAliasTable builds the table for the given positions and weights
// (weights > 0, same length).
func newAliasTable(pos []uint32, weights []int) aliasTable {
	n := len(pos)
	t := aliasTable{prob: make([]uint32, n), alias: make([]uint32, n), pos: pos}
	if n == 0 {
		return t
	}
	total := 0
	for _, w := range weights {
		total += w
	}
	// Scaled weights: each column holds exactly total units on average.
	scaled := make([]int, n)
	var small, large []int
	for i, w := range weights {
		scaled[i] = w * n
		if scaled[i] < total {
			small = append(small, i)
		} else {
			large = append(large, i)
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		t.prob[s] = uint32(uint64(scaled[s]) << 32 / uint64(total))
		t.alias[s] = uint32(l)
		scaled[l] -= total - scaled[s]
		if scaled[l] < total {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	// What is left is full up to rounding: always keep the column.
	for _, i := range append(small, large...) {
		t.prob[i] = ^uint32(0)
		t.alias[i] = uint32(i)
	}
	return t
}

// sample returns a position drawn with one 64-bit random number: the low
// half chooses the column, the high half the coin.
func (t *aliasTable) sample(r uint64) uint32 {
	col := uint32((uint64(uint32(r)) * uint64(len(t.prob))) >> 32)
	if uint32(r>>32) >= t.prob[col] {
		col = t.alias[col]
	}
	return t.pos[col]
}
