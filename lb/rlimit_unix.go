//go:build unix

package lb

import "syscall"

// processFileLimit returns the process's soft RLIMIT_NOFILE, the number of
// descriptors it may hold, or false if it cannot be read or is unlimited.
func processFileLimit() (int, bool) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, false
	}
	cur := uint64(l.Cur) // int64 on some systems; RLIM_INFINITY is all ones either way
	if cur > 1<<40 {
		return 0, false
	}
	return int(cur), true
}
