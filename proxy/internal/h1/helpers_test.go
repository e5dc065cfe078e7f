package h1

import (
	"errors"
	"testing"
)

// incomplete is the status a result reports for a message that needs more
// bytes: a head or body cut short.
const incomplete = -1

// result is what the parser makes of the bytes of one message: the status
// it answers (0 when it accepts the message, incomplete when it needs more
// bytes), and for an accepted one its framing, its decoded body and the
// bytes after it (the next message).
type result struct {
	status  int
	framing Framing
	body    string
	rest    string
}

// statusOf returns the status an error from the parser stands for.
func statusOf(t testing.TB, err error) int {
	t.Helper()
	var e *Error
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrIncomplete):
		return incomplete
	case errors.As(err, &e):
		return e.Status
	}
	t.Fatalf("unexpected error type %T: %v", err, err)
	return 0
}

// readRequest parses the request at the start of raw, and its body.
func readRequest(t testing.TB, raw []byte, r *Request, lim Limits) result {
	t.Helper()
	n, err := ParseRequest(raw, r, lim)
	if err != nil {
		return result{status: statusOf(t, err)}
	}
	return readBody(t, raw, n, r.Framing, r.ContentLength)
}

// readResponse parses the response at the start of raw, answering method,
// and its body.
func readResponse(t testing.TB, raw []byte, r *Response, method string) result {
	t.Helper()
	n, err := ParseResponse(raw, r, []byte(method), Limits{})
	if err != nil {
		return result{status: statusOf(t, err)}
	}
	return readBody(t, raw, n, r.Framing, r.ContentLength)
}

// readBody reads the body framed as f that starts at raw[n].
func readBody(t testing.TB, raw []byte, n int, f Framing, cl int64) result {
	t.Helper()
	res := result{framing: f}
	switch f {
	case FramingNone, FramingTunnel:
	case FramingLength:
		if int64(len(raw)-n) < cl {
			return result{status: incomplete}
		}
		res.body = string(raw[n : n+int(cl)])
		n += int(cl)
	case FramingUntilClose:
		res.body = string(raw[n:])
		n = len(raw)
	case FramingChunked:
		var c Chunked
		var body []byte
		for {
			k, data, done, err := c.Decode(raw[n:])
			n += k
			body = append(body, data...)
			if err != nil {
				return result{status: statusOf(t, err)}
			}
			if done {
				break
			}
			if k == 0 {
				return result{status: incomplete}
			}
		}
		res.body = string(body)
	}
	res.rest = string(raw[n:])
	return res
}
