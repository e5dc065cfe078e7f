package acme_test

import (
	"testing"

	"go.uber.org/goleak"
)

// certmagic keeps goroutines of its own beyond a Manager's Close, at
// package level: a lock file's refresher, which ends by itself within 5 s
// of the unlock, and the rate limiter of each CA account, which never
// ends. They are not the Manager's; everything else must be gone.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).loop"),
	)
}
