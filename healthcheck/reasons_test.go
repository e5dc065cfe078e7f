package healthcheck

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// quotedReasons are the doc comments that quote reasons of health changes,
// as "file: Type.Field". Their quotes are checked against what the code
// produces, so that they cannot drift from it again.
var quotedReasons = []string{
	"healthcheck/status.go: Change.Reason",
	"lb/health.go: HealthEvent.Reason",
	"admin/admin.go: TargetHealth.Reason",
}

// TestQuotedReasons checks that every reason quoted in those comments is
// one the code produces, with the defaults (3 successes, 5 failures, an
// ejection of 30 s) and the checks' own reasons.
func TestQuotedReasons(t *testing.T) {
	produced := map[string]bool{
		reasonFirstSuccess:                       true,
		reasonSuccesses(DefaultHealthyThreshold): true,
		reasonEjected(reasonFailures(DefaultEjectionFailures, "connection reset")): true,
		reasonEjectionEnded(DefaultEjectionPeriod):                                 true,
	}
	// The checks' reasons, from real checks on loopback.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())
	produced[Reason(TCP{}.Check(context.Background(), Target{ID: "a", Addr: closed}))] = true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }))
	defer srv.Close()
	hc, err := NewHTTP(HTTPConfig{})
	require.NoError(t, err)
	defer hc.Close()
	produced[Reason(hc.Check(context.Background(), Target{ID: "a", Addr: srv.Listener.Addr().String()}))] = true

	quote := regexp.MustCompile(`"([^"]+)"`)
	for _, where := range quotedReasons {
		file, decl, _ := strings.Cut(where, ": ")
		typ, field, _ := strings.Cut(decl, ".")
		doc := fieldDoc(t, filepath.Join("..", file), typ, field)
		require.NotEmpty(t, doc, "%s has no doc comment", where)
		quotes := quote.FindAllStringSubmatch(strings.Join(strings.Fields(doc), " "), -1)
		require.NotEmpty(t, quotes, "%s quotes no reason", where)
		for _, q := range quotes {
			assert.True(t, produced[q[1]], "%s quotes %q, which the code does not produce (it produces %q)", where, q[1], keys(produced))
		}
	}
}

// fieldDoc returns the doc comment of field of type typ in file.
func fieldDoc(t *testing.T, file, typ, field string) string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ParseComments|parser.SkipObjectResolution)
	require.NoError(t, err)
	var doc string
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != typ {
			return true
		}
		st, ok := ts.Type.(*ast.StructType)
		if !ok {
			return false
		}
		for _, fl := range st.Fields.List {
			for _, name := range fl.Names {
				if name.Name == field && fl.Doc != nil {
					doc = fl.Doc.Text()
				}
			}
		}
		return false
	})
	return doc
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
