//go:build !unix

package lb

// processFileLimit reports that the descriptor limit is not known here: the
// descriptor budget is off by default.
func processFileLimit() (int, bool) { return 0, false }
