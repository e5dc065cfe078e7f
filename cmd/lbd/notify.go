package main

import (
	"log/slog"

	sdnotify "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// notifier tells systemd how lbd is doing (sd_notify): READY=1 once it
// serves (with MAINPID, so that a process taking over in a binary upgrade
// becomes the service's main process), RELOADING=1 and READY=1 around a
// reload, STOPPING=1 when it stops. Without NOTIFY_SOCKET (not started by
// systemd with Type=notify) it does nothing.
type notifier struct {
	log *slog.Logger
}

func (n notifier) send(state string) {
	if _, err := sdnotify.SdNotify(false, state); err != nil {
		n.log.Warn("cannot notify systemd", "state", state, "err", err)
	}
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, which systemd wants
// with RELOADING=1.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Sec*1e6 + ts.Nsec/1e3
}
