package h1

import (
	"math/rand/v2"
	"testing"
)

// TestSkipValue checks the eight-bytes-at-a-time scan against the plain
// byte loop: every byte value at every position of a word, and random
// buffers.
func TestSkipValue(t *testing.T) {
	naive := func(b []byte, i int) int {
		for valueChar[b[i]] {
			i++
		}
		return i
	}
	for c := range 256 {
		for pos := range 20 {
			b := make([]byte, 24)
			for k := range b {
				b[k] = 'a'
			}
			b[pos] = byte(c)
			b[len(b)-1] = '\r'
			for start := 0; start <= pos; start++ {
				if got, want := skipValue(b, start), naive(b, start); got != want {
					t.Fatalf("byte %#x at %d from %d: %d, want %d", c, pos, start, got, want)
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		b := make([]byte, 1+rng.IntN(40))
		for k := range b {
			// Mostly value bytes, sometimes anything.
			if rng.IntN(20) == 0 {
				b[k] = byte(rng.IntN(256))
			} else {
				b[k] = byte(0x20 + rng.IntN(0xe0))
			}
		}
		b[len(b)-1] = '\n'
		start := rng.IntN(len(b))
		if got, want := skipValue(b, start), naive(b, start); got != want {
			t.Fatalf("%q from %d: %d, want %d", b, start, got, want)
		}
	}
}
