package docs_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const module = "github.com/lbkit/lbkit"

// imports returns what the non-test files of a package directory import:
// lbkit's packages (relative to the module) and the packages outside the
// standard library, each sorted.
func imports(t *testing.T, dir string) (lbkit, external []string) {
	t.Helper()
	seen := map[string]bool{}
	entries, err := os.ReadDir(filepath.Join(root, dir))
	require.NoError(t, err)
	fset := token.NewFileSet()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(root, dir, e.Name()), nil, parser.ImportsOnly)
		require.NoError(t, err)
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if seen[path] {
				continue
			}
			seen[path] = true
			switch first, _, _ := strings.Cut(path, "/"); {
			case strings.HasPrefix(path, module+"/"):
				lbkit = append(lbkit, strings.TrimPrefix(path, module+"/"))
			case strings.Contains(first, "."):
				external = append(external, path)
			}
		}
	}
	return sorted(lbkit), sorted(external)
}

// packageDirs returns the module's package directories, examples and docs
// left out, and so are the nested modules (directories with a go.mod of
// their own: the integrations, listed in docs/integrations.md, not in the
// import table).
func packageDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			switch {
			case rel == ".":
				return nil
			case rel == "examples", rel == "docs", strings.HasPrefix(d.Name(), "."), d.Name() == "testdata":
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
			return nil
		}
		if dir := filepath.ToSlash(filepath.Dir(rel)); dir != "." && strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go") {
			if len(dirs) == 0 || dirs[len(dirs)-1] != dir {
				dirs = append(dirs, dir)
			}
		}
		return nil
	})
	require.NoError(t, err)
	return sorted(dirs)
}

var codeItem = regexp.MustCompile("`([^`]+)`")

// items returns the backticked items of a table cell; "—" is none.
func items(cell string) []string {
	var out []string
	for _, m := range codeItem.FindAllStringSubmatch(cell, -1) {
		out = append(out, m[1])
	}
	return sorted(out)
}

// TestArchitectureImports checks the import table of architecture.md
// against the packages' source: one row per package, with exactly the
// lbkit packages and the outside packages it imports.
func TestArchitectureImports(t *testing.T) {
	var table section
	for _, s := range sections(readFile(t, "docs/architecture.md")) {
		if s.heading == "Packages and imports" {
			table = s
		}
	}
	header, rows := table.rows()
	require.Equal(t, []string{"package", "imports from lbkit", "imports outside the standard library", "holds"}, header, "the import table's columns")
	doc := map[string]row{}
	for _, r := range rows {
		doc[r.key()] = r
	}
	dirs := packageDirs(t)
	for _, dir := range dirs {
		r, ok := doc[dir]
		if !assert.True(t, ok, "architecture.md's import table has no row for package %s", dir) {
			continue
		}
		lbkit, external := imports(t, dir)
		assert.Equal(t, lbkit, items(r.cells[1]), "the lbkit packages %s imports", dir)
		assert.Equal(t, external, items(r.cells[2]), "the packages outside the standard library %s imports", dir)
	}
	for name, r := range doc {
		if _, err := os.Stat(filepath.Join(root, name, "go.mod")); err == nil {
			// An integration module's package (acme, tracing): checked
			// like the others; its row is there to show what it pulls in.
			lbkit, external := imports(t, name)
			assert.Equal(t, lbkit, items(r.cells[1]), "the lbkit packages %s imports", name)
			assert.Equal(t, external, items(r.cells[2]), "the packages outside the standard library %s imports", name)
			continue
		}
		assert.Contains(t, dirs, name, "architecture.md's import table lists %s, which is not a package of the module", name)
	}
}
