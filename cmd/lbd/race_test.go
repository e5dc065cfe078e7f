//go:build race

package main

// raceEnabled says the test runs under the race detector, so the daemon it
// builds is built with it too.
const raceEnabled = true
