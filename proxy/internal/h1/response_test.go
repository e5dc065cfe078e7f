package h1

import "testing"

func TestResponseFields(t *testing.T) {
	in := "HTTP/1.0 404 Not  Found\r\nConnection: keep-alive\r\nContent-Length: 2\r\nServer: x\r\n\r\nno"
	var r Response
	n, err := ParseResponse([]byte(in), &r, []byte("GET"), Limits{})
	if err != nil || n != len(in)-2 {
		t.Fatalf("%d, %v", n, err)
	}
	if r.Minor != 0 || r.Status != 404 || string(r.Reason) != "Not  Found" || r.Close || r.Framing != FramingLength || r.ContentLength != 2 || len(r.Headers) != 3 {
		t.Errorf("%+v", r)
	}
}

func TestResponseClose(t *testing.T) {
	for _, c := range []struct {
		in    string
		close bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false},
		{"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", true},
		{"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", true},
		{"HTTP/1.1 200 OK\r\n\r\n", true},
		{"HTTP/1.1 204 No Content\r\n\r\n", false},
	} {
		var r Response
		if _, err := ParseResponse([]byte(c.in), &r, []byte("GET"), Limits{}); err != nil {
			t.Fatal(err)
		}
		if r.Close != c.close {
			t.Errorf("%q: Close %v, want %v", c.in, r.Close, c.close)
		}
	}
}

func TestResponseAllocs(t *testing.T) {
	in := []byte(typicalResponse)
	var r Response
	get := []byte("GET")
	if _, err := ParseResponse(in, &r, get, Limits{}); err != nil {
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(100, func() { _, _ = ParseResponse(in, &r, get, Limits{}) }); a != 0 {
		t.Errorf("%v allocations per parse", a)
	}
}
