//go:build unix

package main

import (
	"log/slog"
	"syscall"
)

// raiseFileLimit raises the soft limit on open files to the hard one, and
// logs both: the load balancer's descriptor budget is sized from it. Go
// already raises it to the hard limit minus one when a program starts (on
// Unix, since Go 1.19), and restores the original for the programs it
// starts; lbd does it explicitly so that the limit it runs with is the one
// in its log, whatever the Go version.
func raiseFileLimit(log *slog.Logger) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		log.Warn("cannot read the limit on open files", "err", err)
		return
	}
	soft := l.Cur
	if l.Cur != l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			log.Warn("cannot raise the limit on open files", "soft", uint64(soft), "hard", uint64(l.Max), "err", err)
			_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
		}
	}
	log.Info("limit on open files", "soft", uint64(l.Cur), "hard", uint64(l.Max), "soft_at_start", uint64(soft))
}
