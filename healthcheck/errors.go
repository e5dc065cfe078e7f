package healthcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

var (
	// ErrInvalidOption is wrapped by every error about a Monitor option or a
	// checker's configuration field (interval not above 0, malformed status
	// codes, relative HTTP path, ...).
	ErrInvalidOption = errors.New("invalid option")

	// ErrInvalidTarget is wrapped by every error about a target's fields
	// (empty ID, malformed address).
	ErrInvalidTarget = errors.New("invalid target")

	// ErrDuplicateTarget is wrapped when two targets share an ID.
	ErrDuplicateTarget = errors.New("duplicate target")

	// ErrUnknownTarget is wrapped when a call names an ID the Monitor does
	// not hold.
	ErrUnknownTarget = errors.New("unknown target")

	// ErrClosed is returned by a Monitor's methods after Close.
	ErrClosed = errors.New("healthcheck: monitor closed")

	// ErrNoICMP is wrapped by NewUDP's error when neither a raw ICMP socket
	// nor an unprivileged ping socket can be opened. The message says why
	// and how to fix it.
	ErrNoICMP = errors.New("no ICMP socket")

	// ErrUnexpectedStatus is wrapped by an HTTP check's error when the
	// response status is not one of the expected codes.
	ErrUnexpectedStatus = errors.New("unexpected status")

	// ErrBodyMismatch is wrapped by an HTTP check's error when the response
	// body does not match the expected expression.
	ErrBodyMismatch = errors.New("body does not match")

	// ErrNoEchoReply is wrapped by a UDP check's error when the target sent
	// no ICMP echo reply within the timeout.
	ErrNoEchoReply = errors.New("no ICMP echo reply")
)

// CheckError is a failed check: a short reason in words, the answer to "why
// is this target unhealthy?", and the error underneath it.
//
// Reasons are short and specific, for people reading a status page or a log
// line: "connection refused", "timeout after 3s", "status 404, want 200",
// "ICMP port unreachable", "no ICMP echo reply in 3s", "TLS: certificate
// signed by unknown authority".
type CheckError struct {
	// Reason says why the check failed, in words.
	Reason string
	// Err is the underlying error (a *net.OpError, a sentinel such as
	// ErrUnexpectedStatus, ...); it may be nil.
	Err error
}

// Error returns the reason alone: the underlying error, with its addresses
// and system-call names, is one Unwrap away.
func (e *CheckError) Error() string { return e.Reason }

// Unwrap returns the underlying error, so errors.Is(err,
// syscall.ECONNREFUSED) and errors.Is(err, ErrUnexpectedStatus) work.
func (e *CheckError) Unwrap() error { return e.Err }

// Reason returns why err failed a check, in words: the Reason of the
// *CheckError in its chain if there is one, else a description of common
// network errors ("connection refused", "timeout", "DNS: no such host
// x.example"), else err.Error(). It returns "" for a nil error, so it also
// works on the result of a check that passed.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	var ce *CheckError
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return describe(err, 0)
}

// fail wraps err in a *CheckError whose reason describes it; budget is the
// check's time budget, named in timeout reasons.
func fail(err error, budget time.Duration) error {
	var ce *CheckError
	if errors.As(err, &ce) {
		return err
	}
	return &CheckError{Reason: describe(err, budget), Err: err}
}

// describe names common failures in a few words. budget, if above 0, is the
// time the check was given, quoted in "timeout after ...".
func describe(err error, budget time.Duration) string {
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, context.Canceled):
		return "check canceled"
	case errors.As(err, &dnsErr):
		switch {
		case dnsErr.IsNotFound:
			return "DNS: no such host " + dnsErr.Name
		case dnsErr.IsTimeout:
			return "DNS: timeout resolving " + dnsErr.Name
		}
		return "DNS: " + dnsErr.Err
	case isTimeout(err):
		if budget > 0 {
			return "timeout after " + formatDuration(budget)
		}
		return "timeout"
	}
	if r, ok := tlsReason(err); ok {
		return r
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.ECONNABORTED):
		return "connection aborted"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no local address or port available"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by target"
	}
	return err.Error()
}

// isTimeout reports whether err is a deadline passing.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// tlsReason names TLS failures, "TLS: " and the cause.
func tlsReason(err error) (string, bool) {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
		verify    *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &unknownCA):
		return "TLS: certificate signed by unknown authority", true
	case errors.As(err, &hostname):
		return "TLS: " + strings.TrimPrefix(hostname.Error(), "x509: "), true
	case errors.As(err, &invalid):
		if invalid.Reason == x509.Expired {
			return "TLS: certificate expired or not yet valid", true
		}
		return "TLS: " + strings.TrimPrefix(invalid.Error(), "x509: "), true
	case errors.As(err, &record):
		return "TLS: target did not answer with TLS", true
	case errors.As(err, &verify):
		return "TLS: " + strings.TrimPrefix(verify.Err.Error(), "x509: "), true
	}
	// Alerts from the peer ("remote error: tls: handshake failure") and
	// local handshake errors carry a "tls: " prefix inside the message.
	if _, after, ok := strings.Cut(err.Error(), "tls: "); ok {
		return "TLS: " + after, true
	}
	return "", false
}

// formatDuration prints a check budget the way people write it ("3s",
// "1.5s", "150ms"). A budget computed from a deadline is a little short of
// the timeout someone set (2.9987s for 3s): within 1% of a figure with one
// or two significant digits, it is snapped to it; otherwise it is rounded
// to a few significant digits.
func formatDuration(d time.Duration) string {
	if d <= 0 {
		return d.String()
	}
	for _, digits := range []int{1, 2} {
		c := roundSignificant(d, digits)
		if diff := (d - c).Abs(); diff*100 <= c {
			return c.String()
		}
	}
	return roundSignificant(d, 3).String()
}

// roundSignificant rounds d to the given number of significant decimal
// digits.
func roundSignificant(d time.Duration, digits int) time.Duration {
	unit := time.Duration(1)
	for v := d; v >= 10; v /= 10 {
		unit *= 10
	}
	for range digits - 1 {
		unit /= 10
	}
	return d.Round(max(unit, 1))
}
