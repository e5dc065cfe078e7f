//go:build !race

package sticky

const raceEnabled = false
