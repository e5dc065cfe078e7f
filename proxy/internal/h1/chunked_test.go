package h1

import (
	"strings"
	"testing"
)

// forward runs body through a Chunked as a proxy does: reading it in
// pieces of step bytes into a buffer, forwarding what Scan passes and
// keeping the rest. It returns what was forwarded, what is left after the
// body, and the error.
func forward(t *testing.T, body string, step int, c *Chunked) (out, rest string, err error) {
	t.Helper()
	var buf []byte
	var fwd strings.Builder
	in := body
	for {
		k := min(step, len(in))
		buf = append(buf, in[:k]...)
		in = in[k:]
		n, done, err := c.Scan(buf)
		fwd.Write(buf[:n])
		buf = buf[n:]
		if err != nil {
			return fwd.String(), "", err
		}
		if done {
			return fwd.String(), string(buf) + in, nil
		}
		if k == 0 {
			return fwd.String(), "", ErrIncomplete
		}
	}
}

func TestChunkedForward(t *testing.T) {
	body := "5;a=b\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 1\r\n\r\n"
	for step := 1; step <= len(body); step++ {
		var c Chunked
		out, rest, err := forward(t, body+next, step, &c)
		if err != nil || out != body || rest != next || c.Size() != 31 || !c.Done() {
			t.Fatalf("step %d: forwarded %q, rest %q, err %v, size %d", step, out, rest, err, c.Size())
		}
	}
}

// TestChunkedForwardsWholeLines checks that a chunk-size line and a trailer
// line are passed only whole: the part forwarded before an error is always
// well-formed.
func TestChunkedForwardsWholeLines(t *testing.T) {
	var c Chunked
	for _, p := range []string{"5", "5;a", "5;a=\"x", "5\r"} {
		if n, done, err := c.Scan([]byte(p)); n != 0 || done || err != nil {
			t.Errorf("Scan(%q) = %d, %v, %v; want 0, false, nil", p, n, done, err)
		}
	}
	c.Reset()
	n, _, err := c.Scan([]byte("5\r\nhello\r\n0\r\nX-Sum: 1"))
	if err != nil || n != len("5\r\nhello\r\n0\r\n") {
		t.Errorf("partial trailer line: %d, %v", n, err)
	}
}

func TestChunkedStickyError(t *testing.T) {
	var c Chunked
	if _, _, err := c.Scan([]byte("zz\r\n")); statusOf(t, err) != 400 {
		t.Fatalf("bad size: %v", err)
	}
	if _, _, err := c.Scan([]byte("0\r\n\r\n")); err == nil {
		t.Error("error forgotten")
	}
	c.Reset()
	if _, done, err := c.Scan([]byte("0\r\n\r\n")); !done || err != nil {
		t.Errorf("after Reset: %v, %v", done, err)
	}
}

func TestChunkedLimits(t *testing.T) {
	c := Chunked{MaxExtBytes: 10, MaxTrailerBytes: 12}
	if _, done, err := c.Scan([]byte("1;abcdefghi\r\nx\r\n0\r\nX: 12345\r\n\r\n")); !done || err != nil {
		t.Errorf("at the limits: %v, %v", done, err)
	}
	c.Reset()
	if c.MaxExtBytes != 10 {
		t.Fatal("Reset lost the limits")
	}
	if _, _, err := c.Scan([]byte("1;abcdefghij\r\nx\r\n")); statusOf(t, err) != 400 {
		t.Errorf("extensions over the limit: %v", err)
	}
	c.Reset()
	if _, _, err := c.Scan([]byte("0\r\nX: 123456\r\n\r\n")); statusOf(t, err) != 400 {
		t.Errorf("trailer over the limit: %v", err)
	}
	c.Reset()
	// A trailer line over the limit is refused before it ends.
	if _, _, err := c.Scan([]byte("0\r\nX: 12345678901")); statusOf(t, err) != 400 {
		t.Errorf("unterminated trailer over the limit: %v", err)
	}
	c.Reset()
	if _, _, err := c.Scan([]byte("1;e=" + strings.Repeat("x", maxChunkLine))); statusOf(t, err) != 400 {
		t.Errorf("unterminated long chunk line: %v", err)
	}
}

func TestChunkedDecode(t *testing.T) {
	in := []byte("3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\nrest")
	var c Chunked
	var got []byte
	n := 0
	for {
		k, data, done, err := c.Decode(in[n:])
		if err != nil {
			t.Fatal(err)
		}
		n += k
		got = append(got, data...)
		if done {
			break
		}
	}
	if string(got) != "abcde" || string(in[n:]) != "rest" {
		t.Errorf("decoded %q, rest %q", got, in[n:])
	}
}

func TestChunkedAllocs(t *testing.T) {
	in := []byte("5;a=b\r\nhello\r\n0\r\nX: y\r\n\r\n")
	var c Chunked
	if a := testing.AllocsPerRun(100, func() { c.Reset(); _, _, _ = c.Scan(in) }); a != 0 {
		t.Errorf("%v allocations per body", a)
	}
}

func TestChunkedOnTrailer(t *testing.T) {
	var got []string
	c := Chunked{OnTrailer: func(h Header) {
		got = append(got, string(h.Name)+"="+string(h.Value)+"/"+h.Kind.String())
	}}
	if _, done, err := c.Scan([]byte("1\r\nx\r\n0\r\nX-Sum: 12 \r\nTE:\ttrailers\r\n\r\n")); !done || err != nil {
		t.Fatal(done, err)
	}
	if want := "X-Sum=12/|TE=trailers/TE"; strings.Join(got, "|") != want {
		t.Errorf("trailers %q, want %q", strings.Join(got, "|"), want)
	}
	c.Reset()
	if c.OnTrailer == nil {
		t.Error("Reset lost OnTrailer")
	}
}

func TestKindOfExported(t *testing.T) {
	if KindOf("x-forwarded-for") != KindXForwardedFor || KindOf([]byte("Via")) != KindOther {
		t.Error("KindOf")
	}
	if !HopKind(KindTE) || HopKind(KindHost) {
		t.Error("HopKind")
	}
}

// TestChunkedSkip: data a caller moves itself (DataLeft, Skip) counts as
// scanned: the framing after it is checked as if Scan had seen it.
func TestChunkedSkip(t *testing.T) {
	var c Chunked
	body := "a000\r\n" + strings.Repeat("x", 0xa000) + "\r\n3\r\nabc\r\n0\r\n\r\n"
	n, done, err := c.Scan([]byte(body[:10]))
	if err != nil || done || n != 10 {
		t.Fatalf("scan of the head: %d %v %v", n, done, err)
	}
	if got := c.DataLeft(); got != 0xa000-4 {
		t.Fatalf("DataLeft = %d, want %d", got, 0xa000-4)
	}
	c.Skip(c.DataLeft() + 1) // too much: ignored
	if c.DataLeft() != 0xa000-4 {
		t.Fatal("Skip beyond the chunk was taken")
	}
	c.Skip(c.DataLeft())
	if c.DataLeft() != 0 || c.Size() != 0xa000 {
		t.Fatalf("after Skip: left %d, size %d", c.DataLeft(), c.Size())
	}
	rest := body[6+0xa000:]
	n, done, err = c.Scan([]byte(rest))
	if err != nil || !done || n != len(rest) {
		t.Fatalf("scan of the rest: %d %v %v", n, done, err)
	}
	if c.Size() != 0xa000+3 {
		t.Fatalf("size %d", c.Size())
	}

	var bad Chunked
	_, _, _ = bad.Scan([]byte("4\r\n"))
	bad.Skip(bad.DataLeft())
	if _, _, err := bad.Scan([]byte("XY")); err == nil {
		t.Fatal("a chunk not ended by CRLF after skipped data was accepted")
	}
}
