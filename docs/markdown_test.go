package docs_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// root is the module's root directory, from the docs directory the tests
// run in.
const root = ".."

// section is a part of a Markdown file under one heading, up to the next
// heading of the same or a higher level.
type section struct {
	level   int    // 2 for ##, 3 for ###
	heading string // the heading's text
	line    int    // its line number, from 1
	body    []string
}

// readFile returns a file of the module as a string.
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, path))
	require.NoError(t, err)
	return string(b)
}

// lines splits a document into lines, and blanks those inside fenced code
// blocks so that their contents are never taken for headings or tables.
func lines(doc string) []string {
	ls := strings.Split(doc, "\n")
	in := false
	for i, l := range ls {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			in = !in
			ls[i] = ""
			continue
		}
		if in {
			ls[i] = ""
		}
	}
	return ls
}

// sections splits a document at its ## and ### headings.
func sections(doc string) []section {
	var out []section
	for i, l := range lines(doc) {
		level := 0
		switch {
		case strings.HasPrefix(l, "### "):
			level = 3
		case strings.HasPrefix(l, "## "):
			level = 2
		}
		if level > 0 {
			out = append(out, section{level: level, heading: strings.TrimSpace(l[level+1:]), line: i + 1})
			continue
		}
		if len(out) > 0 {
			out[len(out)-1].body = append(out[len(out)-1].body, l)
		}
	}
	return out
}

// row is one row of a Markdown table: its cells, trimmed.
type row struct {
	cells []string
	line  string
}

// tables returns the rows of the tables in a section's body, header and
// separator rows excluded, each table's rows with its header's column names.
func (s section) rows() (header []string, rows []row) {
	var prev string
	for _, l := range s.body {
		if !strings.HasPrefix(l, "|") {
			prev = l
			continue
		}
		cells := splitRow(l)
		switch {
		case strings.HasPrefix(l, "|---"):
		case !strings.HasPrefix(prev, "|"):
			header = cells // a table's first row
		default:
			rows = append(rows, row{cells: cells, line: l})
		}
		prev = l
	}
	return header, rows
}

func splitRow(l string) []string {
	l = strings.TrimSpace(l)
	l = strings.TrimPrefix(l, "|")
	l = strings.TrimSuffix(l, "|")
	cells := strings.Split(l, "|")
	for i := range cells {
		cells[i] = strings.TrimSpace(cells[i])
	}
	return cells
}

var firstCode = regexp.MustCompile("^`([^`]+)`")

// key returns the backticked text that starts a row's first cell, or "".
func (r row) key() string {
	if m := firstCode.FindStringSubmatch(r.cells[0]); m != nil {
		return m[1]
	}
	return ""
}

// anchors returns the anchors GitHub gives a document's headings: lower
// case, punctuation other than hyphens and underscores dropped, spaces made
// hyphens, repeats numbered.
func anchors(doc string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	for _, l := range lines(doc) {
		if !strings.HasPrefix(l, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(l, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127 && isLetter(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			seen[a]++
			a = a + "-" + strconv.Itoa(n)
		} else {
			seen[a] = 1
		}
		out[a] = true
	}
	return out
}

func isLetter(r rune) bool {
	return strings.ToLower(string(r)) != strings.ToUpper(string(r))
}
