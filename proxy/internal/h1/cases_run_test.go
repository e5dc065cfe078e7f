package h1

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRequestCases(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range requestCases {
		if seen[c.name] {
			t.Fatalf("two cases named %s", c.name)
		}
		seen[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			var r Request
			got := readRequest(t, []byte(c.in), &r, Limits{})
			if got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestResponseCases(t *testing.T) {
	for _, c := range responseCases {
		t.Run(c.name, func(t *testing.T) {
			var r Response
			got := readResponse(t, []byte(c.in), &r, c.method)
			if got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

var writeSeeds = flag.Bool("write-seeds", false, "write the cases to testdata/fuzz as seed corpora")

// TestSeedCorpus checks that every case is a seed of the differential fuzz
// targets, in testdata/fuzz; with -write-seeds it writes them.
func TestSeedCorpus(t *testing.T) {
	check := func(target, name, content string) {
		t.Helper()
		path := filepath.Join("testdata", "fuzz", target, "case-"+name)
		if *writeSeeds {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != content {
			t.Errorf("%s is missing or stale: go test -run TestSeedCorpus -write-seeds", path)
		}
	}
	for _, c := range requestCases {
		check("FuzzRequestDifferential", c.name, fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", c.in))
	}
	for _, c := range responseCases {
		if c.method != "GET" && c.method != "HEAD" {
			continue
		}
		check("FuzzResponseDifferential", c.name, fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbool(%v)\n", c.in, c.method == "HEAD"))
	}
}

// TestIncremental feeds every case a byte at a time, with the same
// Request: every prefix of a head must be ErrIncomplete (or, for a
// refused head, the refusal may come early), and the whole head must give
// what parsing it at once gives.
func TestIncremental(t *testing.T) {
	for _, c := range requestCases {
		in := []byte(c.in)
		var once Request
		n1, err1 := ParseRequest(in, &once, Limits{})
		var r Request
		var n2 int
		var err2 error
		for k := 0; k <= len(in); k++ {
			n2, err2 = ParseRequest(in[:k], &r, Limits{})
			if err2 != ErrIncomplete {
				break
			}
		}
		if n1 != n2 || statusOf(t, err1) != statusOf(t, err2) {
			t.Errorf("%s: byte by byte (%d, %v), at once (%d, %v)", c.name, n2, err2, n1, err1)
		}
		if err1 == nil && (string(r.Target) != string(once.Target) || len(r.Headers) != len(once.Headers)) {
			t.Errorf("%s: byte by byte parsed differently", c.name)
		}
	}
	for _, c := range responseCases {
		in := []byte(c.in)
		var once Response
		n1, err1 := ParseResponse(in, &once, []byte(c.method), Limits{})
		var r Response
		var n2 int
		var err2 error
		for k := 0; k <= len(in); k++ {
			n2, err2 = ParseResponse(in[:k], &r, []byte(c.method), Limits{})
			if err2 != ErrIncomplete {
				break
			}
		}
		if n1 != n2 || statusOf(t, err1) != statusOf(t, err2) {
			t.Errorf("%s: byte by byte (%d, %v), at once (%d, %v)", c.name, n2, err2, n1, err1)
		}
	}
}

func TestCaseNames(t *testing.T) {
	for _, c := range requestCases {
		if strings.ContainsAny(c.name, " /\\") {
			t.Errorf("case name %q is not a file name", c.name)
		}
	}
}
