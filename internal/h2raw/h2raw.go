package h2raw

import (
	"bytes"
	"crypto/tls"
	"io"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Conn is a raw HTTP/2 connection over TLS.
type Conn struct {
	TLS    *tls.Conn
	Framer *http2.Framer
	enc    *hpack.Encoder
	dec    *hpack.Decoder // the server's header blocks, in order
	buf    bytes.Buffer
}

// Dial connects to addr over TLS with ALPN h2, sends the client preface and
// an empty SETTINGS frame. cfg's NextProtos is set to h2.
func Dial(addr string, cfg *tls.Config) (*Conn, error) {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		c.Close()
		return nil, err
	}
	h := &Conn{TLS: c, Framer: http2.NewFramer(c, c)}
	h.enc = hpack.NewEncoder(&h.buf)
	h.dec = hpack.NewDecoder(4096, nil)
	if err := h.Framer.WriteSettings(); err != nil {
		c.Close()
		return nil, err
	}
	return h, nil
}

// Close closes the connection.
func (h *Conn) Close() error { return h.TLS.Close() }

// Headers sends a HEADERS frame on stream id with the given fields (name,
// value pairs, pseudo-headers first as given), ending the stream when end
// is set.
func (h *Conn) Headers(id uint32, end bool, fields ...string) error {
	h.buf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		if err := h.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]}); err != nil {
			return err
		}
	}
	return h.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.buf.Bytes(), EndStream: end, EndHeaders: true})
}

// Request sends a request's headers on stream id: method and path to
// authority over https, with extra fields after the pseudo-headers.
func (h *Conn) Request(id uint32, end bool, method, authority, path string, extra ...string) error {
	return h.Headers(id, end, append([]string{":method", method, ":scheme", "https", ":authority", authority, ":path", path}, extra...)...)
}

// Outcome is how the server ended a stream.
type Outcome struct {
	// Status is the response's :status, "" when none came.
	Status string
	// Reset is the RST_STREAM error code, when the stream was reset.
	Reset *http2.ErrCode
	// GoAway is the GOAWAY error code, when the connection was ended.
	GoAway *http2.ErrCode
}

// Await reads frames, decoding every header block in order, until stream
// id is answered (a HEADERS frame with a
// :status of 200 or more), reset, or the connection ends, or timeout
// passes.
func (h *Conn) Await(id uint32, timeout time.Duration) (Outcome, error) {
	_ = h.TLS.SetReadDeadline(time.Now().Add(timeout))
	for {
		f, err := h.Framer.ReadFrame()
		if err != nil {
			return Outcome{}, err
		}
		switch f := f.(type) {
		case *http2.HeadersFrame:
			fields, err := h.dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				return Outcome{}, err
			}
			if f.StreamID != id {
				continue
			}
			for _, hf := range fields {
				if hf.Name == ":status" && hf.Value >= "200" {
					return Outcome{Status: hf.Value}, nil
				}
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				code := f.ErrCode
				return Outcome{Reset: &code}, nil
			}
		case *http2.GoAwayFrame:
			code := f.ErrCode
			return Outcome{GoAway: &code}, nil
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = h.Framer.WriteSettingsAck()
			}
		}
	}
}
