package healthcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestReasons(t *testing.T) {
	op := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}
	}
	for _, tc := range []struct {
		err    error
		budget time.Duration
		want   string
	}{
		{op(syscall.ECONNREFUSED), 0, "connection refused"},
		{op(syscall.ECONNRESET), 0, "connection reset"},
		{op(syscall.EHOSTUNREACH), 0, "host unreachable"},
		{op(syscall.ENETUNREACH), 0, "network unreachable"},
		{op(syscall.EADDRNOTAVAIL), 0, "no local address or port available"},
		{op(syscall.EMFILE), 0, "too many open files"},
		{context.DeadlineExceeded, 3 * time.Second, "timeout after 3s"},
		{context.DeadlineExceeded, 2999871 * time.Microsecond, "timeout after 3s"},
		{fmt.Errorf("read: %w", os.ErrDeadlineExceeded), 1500 * time.Millisecond, "timeout after 1.5s"},
		{op(os.ErrDeadlineExceeded), 150*time.Millisecond + 400*time.Microsecond, "timeout after 150ms"},
		{context.DeadlineExceeded, 0, "timeout"},
		{context.Canceled, 0, "check canceled"},
		{&net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}, 0, "DNS: no such host x.invalid"},
		{&net.DNSError{Err: "i/o timeout", Name: "x.example", IsTimeout: true}, time.Second, "DNS: timeout resolving x.example"},
		{&net.DNSError{Err: "server misbehaving", Name: "x.example"}, 0, "DNS: server misbehaving"},
		{&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, 0, "TLS: certificate signed by unknown authority"},
		{x509.CertificateInvalidError{Reason: x509.Expired}, 0, "TLS: certificate expired or not yet valid"},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, 0, "TLS: target did not answer with TLS"},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: handshake failure")}, 0, "TLS: handshake failure"},
		{io.EOF, 0, "connection closed by target"},
		{io.ErrUnexpectedEOF, 0, "connection closed by target"},
		{errors.New("something else"), 0, "something else"},
		{&CheckError{Reason: "status 404, want 200"}, 0, "status 404, want 200"},
		{fmt.Errorf("wrapped: %w", &CheckError{Reason: "ICMP port unreachable"}), 0, "ICMP port unreachable"},
	} {
		got := Reason(tc.err)
		if tc.budget > 0 {
			got = Reason(fail(tc.err, tc.budget))
		}
		assert.Equal(t, tc.want, got, "%v", tc.err)
	}
	assert.Equal(t, "", Reason(nil))
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		3 * time.Second:                  "3s",
		2999871 * time.Microsecond:       "3s", // a deadline a moment after it was set
		1500 * time.Millisecond:          "1.5s",
		149400 * time.Microsecond:        "150ms",
		155 * time.Millisecond:           "155ms", // not near a round figure: kept
		1234 * time.Millisecond:          "1.23s",
		48 * time.Millisecond:            "48ms",
		90 * time.Second:                 "1m30s",
		0:                                "0s",
		-time.Millisecond:                "-1ms",
		time.Duration(1):                 "1ns",
		123456789 * time.Nanosecond:      "123ms",
		10*time.Second + time.Nanosecond: "10s",
	} {
		assert.Equal(t, want, formatDuration(d), "%v", d)
	}
}

func TestCheckErrorWraps(t *testing.T) {
	cause := &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	err := fail(cause, time.Second)
	var ce *CheckError
	assert.ErrorAs(t, err, &ce)
	assert.Equal(t, "connection refused", err.Error())
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
	assert.Same(t, err, fail(err, time.Second), "an error that has a reason keeps it")
}
