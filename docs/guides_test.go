package docs_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// markdownFiles are the documents whose links are checked: the README and
// everything under docs.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	files := []string{"README.md"}
	for _, pattern := range []string{"docs/*.md", "docs/guides/*.md"} {
		m, err := filepath.Glob(filepath.Join(root, pattern))
		require.NoError(t, err)
		for _, f := range m {
			rel, err := filepath.Rel(root, f)
			require.NoError(t, err)
			files = append(files, filepath.ToSlash(rel))
		}
	}
	return files
}

var (
	inlineCode = regexp.MustCompile("`[^`\n]*`")
	mdLink     = regexp.MustCompile(`\[[^\]\n]*\]\(([^)\s]+)\)`)
)

// links returns a document's link targets, outside code.
func links(doc string) []string {
	var out []string
	for _, l := range lines(doc) {
		l = inlineCode.ReplaceAllString(l, "")
		for _, m := range mdLink.FindAllStringSubmatch(l, -1) {
			out = append(out, m[1])
		}
	}
	return out
}

// TestLinks checks that every relative link of the README and the docs
// leads to a file or directory of the module, and every anchor to a
// heading of its document.
func TestLinks(t *testing.T) {
	for _, file := range markdownFiles(t) {
		doc := readFile(t, file)
		for _, target := range links(doc) {
			if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			dest := file
			if path != "" {
				dest = filepath.ToSlash(filepath.Join(filepath.Dir(file), path))
				_, err := os.Stat(filepath.Join(root, dest))
				if !assert.NoError(t, err, "%s links to %s, which does not exist", file, target) {
					continue
				}
			}
			if anchor != "" {
				require.True(t, strings.HasSuffix(dest, ".md"), "%s links to an anchor of %s, which is not Markdown", file, target)
				assert.True(t, anchors(readFile(t, dest))[anchor], "%s links to %s: no heading of %s has the anchor %q", file, target, dest, anchor)
			}
		}
	}
}

// integrationExample reports whether path is the example directory of an
// integration module: ".../example" inside a directory with its own
// go.mod.
func integrationExample(path string) bool {
	if filepath.Base(path) != "example" {
		return false
	}
	for dir := filepath.Dir(path); dir != "." && dir != "/"; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(root, dir, "go.mod")); err == nil {
			return true
		}
	}
	return false
}

// goBlocks returns the Go code blocks of a document.
func goBlocks(doc string) []string {
	var out []string
	var cur []string
	in := false
	for _, l := range strings.Split(doc, "\n") {
		s := strings.TrimSpace(l)
		switch {
		case !in && s == "```go":
			in, cur = true, nil
		case in && s == "```":
			in = false
			out = append(out, strings.Join(cur, "\n"))
		case in:
			cur = append(cur, l)
		}
	}
	return out
}

// normalized is code as a list of lines without their indentation, blank
// lines dropped, so that a quote indented for a Markdown list still matches
// its source.
func normalized(code string) []string {
	var out []string
	for _, l := range strings.Split(code, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// contains reports whether needle appears as a run of lines in hay.
func contains(hay, needle []string) bool {
	for i := 0; i+len(needle) <= len(hay); i++ {
		if slices.Equal(hay[i:i+len(needle)], needle) {
			return true
		}
	}
	return false
}

// TestGuidesQuoteTheirExamples checks that every guide points to a runnable
// example under examples/guides (or, for an integration module, its
// example directory: a path ending in /example under a directory with a
// go.mod), that every Go code block of a guide is
// quoted from the source of an example it points to (so every block is code
// that compiles and runs under a test), that every example is pointed to by
// a guide, and that the README links every guide.
func TestGuidesQuoteTheirExamples(t *testing.T) {
	guides, err := filepath.Glob(filepath.Join(root, "docs/guides/*.md"))
	require.NoError(t, err)
	require.NotEmpty(t, guides)
	readme := readFile(t, "README.md")
	used := map[string]bool{}
	for _, g := range guides {
		name := filepath.Base(g)
		doc := readFile(t, "docs/guides/"+name)
		assert.Contains(t, links(readme), "docs/guides/"+name, "README.md does not link the guide %s", name)

		var sources [][]string
		for _, target := range links(doc) {
			path := filepath.ToSlash(filepath.Join("docs/guides", target))
			if !strings.HasPrefix(path, "examples/guides/") && !integrationExample(path) {
				continue
			}
			used[path] = true
			files, err := filepath.Glob(filepath.Join(root, path, "*.go"))
			require.NoError(t, err)
			for _, f := range files {
				if strings.HasSuffix(f, "_test.go") {
					continue
				}
				b, err := os.ReadFile(f)
				require.NoError(t, err)
				sources = append(sources, normalized(string(b)))
			}
		}
		if !assert.NotEmpty(t, sources, "guide %s points to no runnable example under examples/guides", name) {
			continue
		}
		for _, block := range goBlocks(doc) {
			found := slices.ContainsFunc(sources, func(src []string) bool { return contains(src, normalized(block)) })
			assert.True(t, found, "a Go block of guide %s is not quoted from its example:\n%s", name, block)
		}
	}
	examples, err := filepath.Glob(filepath.Join(root, "examples/guides/*"))
	require.NoError(t, err)
	for _, e := range examples {
		rel, _ := filepath.Rel(root, e)
		assert.True(t, used[filepath.ToSlash(rel)], "no guide points to %s", rel)
	}
}
