package docs_test

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lbkit/lbkit/balancer"
	"github.com/lbkit/lbkit/flowtable"
	"github.com/lbkit/lbkit/healthcheck"
	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/proxy"
	"github.com/lbkit/lbkit/sticky"
)

// goPkg is what the tests read of a package's source (test files left out).
type goPkg struct {
	name   string
	fset   *token.FileSet
	types  map[string]*ast.TypeSpec
	funcs  []*ast.FuncDecl     // functions, not methods
	consts map[string][]string // exported constants by type name, in order
}

// parsePkg parses the non-test Go files of a directory of the module.
func parsePkg(t *testing.T, dir string) *goPkg {
	t.Helper()
	p := &goPkg{name: filepath.Base(dir), fset: token.NewFileSet(), types: map[string]*ast.TypeSpec{}, consts: map[string][]string{}}
	entries, err := os.ReadDir(filepath.Join(root, dir))
	require.NoError(t, err)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(p.fset, filepath.Join(root, dir, e.Name()), nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil {
					p.funcs = append(p.funcs, d)
				}
			case *ast.GenDecl:
				typ := "" // the type of an iota run carries on to the specs after it
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						p.types[s.Name.Name] = s
					case *ast.ValueSpec:
						if d.Tok != token.CONST {
							continue
						}
						if id, ok := s.Type.(*ast.Ident); ok {
							typ = id.Name
						} else if s.Type != nil || len(s.Values) > 0 {
							typ = ""
						}
						for _, n := range s.Names {
							if n.IsExported() {
								p.consts[typ] = append(p.consts[typ], n.Name)
							}
						}
					}
				}
			}
		}
	}
	return p
}

// named returns the package and name of the named type in e, through
// pointers, slices and variadic parameters.
func named(pkg string, e ast.Expr) (string, string, bool) {
	switch x := e.(type) {
	case *ast.StarExpr:
		return named(pkg, x.X)
	case *ast.ArrayType:
		return named(pkg, x.Elt)
	case *ast.Ellipsis:
		return named(pkg, x.Elt)
	case *ast.Ident:
		return pkg, x.Name, x.IsExported()
	case *ast.SelectorExpr:
		if id, ok := x.X.(*ast.Ident); ok {
			return id.Name, x.Sel.Name, true
		}
	}
	return "", "", false
}

// exportedFields lists a struct's exported field names, in order.
func exportedFields(st *ast.StructType) []string {
	var out []string
	for _, f := range st.Fields.List {
		for _, n := range f.Names {
			if n.IsExported() {
				out = append(out, n.Name)
			}
		}
	}
	return out
}

// libPkgs are the packages whose types the lb options take.
func libPkgs(t *testing.T) map[string]*goPkg {
	pkgs := map[string]*goPkg{}
	for _, dir := range []string{"lb", "proxy", "balancer"} {
		pkgs[dir] = parsePkg(t, dir)
	}
	return pkgs
}

// optionTypes returns the lb package's option types: exported function
// types named ...Option.
func optionTypes(p *goPkg) []string {
	var out []string
	for name, ts := range p.types {
		if _, ok := ts.Type.(*ast.FuncType); ok && strings.HasSuffix(name, "Option") && ast.IsExported(name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// options returns the exported functions of p returning typ, by name, with
// their signatures as the document writes them: Name(params).
func options(p *goPkg, typ string) map[string]string {
	out := map[string]string{}
	for _, f := range p.funcs {
		res := f.Type.Results
		if !f.Name.IsExported() || res == nil || len(res.List) != 1 {
			continue
		}
		if id, ok := res.List[0].Type.(*ast.Ident); !ok || id.Name != typ {
			continue
		}
		var b bytes.Buffer
		printer.Fprint(&b, p.fset, &ast.FuncType{Params: f.Type.Params})
		out[f.Name.Name] = f.Name.Name + strings.TrimPrefix(b.String(), "func")
	}
	return out
}

var headingType = regexp.MustCompile("\\(`(\\w+)\\.(\\w+)`\\)$")

// docSection is a ### section of configuration.md that documents a Go type.
type docSection struct {
	section
	pkg, typ string
	paths    []string // the YAML paths the heading names (daemon part)
}

// configSections reads configuration.md's ### sections that name a type,
// for the library part (until "## Daemon") and the daemon's YAML part.
func configSections(t *testing.T) (lib, yaml []docSection, flags section) {
	t.Helper()
	part := ""
	for _, s := range sections(readFile(t, "docs/configuration.md")) {
		if s.level == 2 {
			switch {
			case strings.HasPrefix(s.heading, "Library"):
				part = "lib"
			case strings.HasPrefix(s.heading, "Daemon: the YAML file"):
				part = "yaml"
			case strings.HasPrefix(s.heading, "Daemon: the command line"):
				part = "flags"
				flags = s
			}
			continue
		}
		m := headingType.FindStringSubmatch(s.heading)
		if m == nil {
			continue
		}
		ds := docSection{section: s, pkg: m[1], typ: m[2]}
		for _, c := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(s.heading, -1) {
			if c[1] != m[1]+"."+m[2] {
				ds.paths = append(ds.paths, c[1])
			}
		}
		switch part {
		case "lib":
			lib = append(lib, ds)
		case "yaml":
			yaml = append(yaml, ds)
		}
	}
	require.NotEmpty(t, lib, "no library sections in configuration.md")
	require.NotEmpty(t, yaml, "no YAML sections in configuration.md")
	return lib, yaml, flags
}

// keys returns the first-cell keys of a section's table rows.
func keys(s section) []string {
	_, rows := s.rows()
	var out []string
	for _, r := range rows {
		if k := r.key(); k != "" {
			out = append(out, k)
		}
	}
	return out
}

func sorted(xs []string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	return out
}

// TestConfigurationLibrary checks the library part of configuration.md
// against the lb package: every option with its signature, every field of
// the structs the options take and every constant of the types they take,
// both ways.
func TestConfigurationLibrary(t *testing.T) {
	pkgs := libPkgs(t)
	lbp := pkgs["lb"]
	lib, _, _ := configSections(t)
	byType := map[string]docSection{}
	for _, s := range lib {
		key := s.pkg + "." + s.typ
		require.NotContains(t, byType, key, "two sections document %s", key)
		byType[key] = s
	}

	// The option types and their options, with signatures.
	want := map[string]bool{}
	var visit func(pkg, name string)
	visit = func(pkg, name string) {
		p := pkgs[pkg]
		if p == nil {
			return // crypto/tls, time, log/slog, ...: not lbkit's
		}
		ts := p.types[name]
		if ts == nil || want[pkg+"."+name] {
			return
		}
		switch tt := ts.Type.(type) {
		case *ast.StructType:
			want[pkg+"."+name] = true
			for _, f := range tt.Fields.List {
				if len(f.Names) > 0 && !f.Names[0].IsExported() {
					continue
				}
				if fp, fn, ok := named(pkg, f.Type); ok {
					visit(fp, fn)
				}
			}
		case *ast.FuncType, *ast.InterfaceType:
		default:
			if len(p.consts[name]) > 0 {
				want[pkg+"."+name] = true
			}
		}
	}
	for _, typ := range optionTypes(lbp) {
		s, ok := byType["lb."+typ]
		if !assert.True(t, ok, "configuration.md has no section for lb.%s", typ) {
			continue
		}
		code := options(lbp, typ)
		doc := map[string]string{}
		for _, k := range keys(s.section) {
			name, _, _ := strings.Cut(k, "(")
			doc[name] = k
		}
		for name, sig := range code {
			got, ok := doc[name]
			if assert.True(t, ok, "lb.%s %s is not in configuration.md (section %q)", typ, sig, s.heading) {
				assert.Equal(t, sig, got, "the signature of lb.%s in configuration.md", name)
			}
		}
		for name := range doc {
			assert.Contains(t, code, name, "configuration.md documents lb.%s, which is not an lb.%s", name, typ)
		}
		for _, f := range lbp.funcs {
			if _, ok := code[f.Name.Name]; ok {
				for _, p := range f.Type.Params.List {
					if pkg, n, ok := named("lb", p.Type); ok {
						visit(pkg, n)
					}
				}
			}
		}
	}

	// Every type an option takes is documented, and every documented type
	// matches the code.
	for key := range want {
		assert.Contains(t, byType, key, "configuration.md has no section for %s, which an lb option takes", key)
	}
	for key, s := range byType {
		p := pkgs[s.pkg]
		if !assert.NotNil(t, p, "section %q: package %s is not one the test reads", s.heading, s.pkg) {
			continue
		}
		ts := p.types[s.typ]
		if !assert.NotNil(t, ts, "section %q: %s does not exist", s.heading, key) {
			continue
		}
		var code []string
		switch tt := ts.Type.(type) {
		case *ast.FuncType:
			continue // options, checked above
		case *ast.StructType:
			code = exportedFields(tt)
		default:
			code = p.consts[s.typ]
		}
		assert.Equal(t, sorted(code), sorted(keys(s.section)), "section %q lists the fields or constants of %s", s.heading, key)
	}
}

// constants are the values of the constants configuration.md quotes. A
// constant that disappears breaks the build of this test; one whose value
// changes fails it.
var constants = map[string]any{
	"lb.DefaultMaxFlows":                    lb.DefaultMaxFlows,
	"lb.DefaultMaxFlowsPerSource":           lb.DefaultMaxFlowsPerSource,
	"lb.MinFlowsPerSource":                  lb.MinFlowsPerSource,
	"lb.MinDescriptorReserve":               lb.MinDescriptorReserve,
	"proxy.DefaultUnrepliedTimeout":         proxy.DefaultUnrepliedTimeout,
	"healthcheck.DefaultMaxConcurrent":      healthcheck.DefaultMaxConcurrent,
	"lb.DefaultConnectTimeout":              lb.DefaultConnectTimeout,
	"lb.DefaultDeregistrationDelay":         lb.DefaultDeregistrationDelay,
	"lb.DefaultDiscoveryInterval":           lb.DefaultDiscoveryInterval,
	"lb.DefaultShutdownTimeout":             lb.DefaultShutdownTimeout,
	"flowtable.DefaultTCPIdleTimeout":       flowtable.DefaultTCPIdleTimeout,
	"flowtable.DefaultUDPIdleTimeout":       flowtable.DefaultUDPIdleTimeout,
	"proxy.DefaultIdleTimeout":              proxy.DefaultIdleTimeout,
	"proxy.DefaultRequestTimeout":           proxy.DefaultRequestTimeout,
	"proxy.DefaultResponseTimeout":          proxy.DefaultResponseTimeout,
	"proxy.DefaultConnectAttempts":          proxy.DefaultConnectAttempts,
	"proxy.DefaultHeaderTimeout":            proxy.DefaultHeaderTimeout,
	"proxy.DefaultMaxHeaderBytes":           proxy.DefaultMaxHeaderBytes,
	"proxy.DefaultMaxBodyBytes":             proxy.DefaultMaxBodyBytes,
	"proxy.DefaultMaxURILength":             proxy.DefaultMaxURILength,
	"proxy.DefaultMaxConnsPerTarget":        proxy.DefaultMaxConnsPerTarget,
	"proxy.DefaultMaxPendingRequests":       proxy.DefaultMaxPendingRequests,
	"proxy.DefaultRetryAttempts":            proxy.DefaultRetryAttempts,
	"proxy.DefaultRetryTimeout":             proxy.DefaultRetryTimeout,
	"proxy.DefaultRetryBodyLimit":           proxy.DefaultRetryBodyLimit,
	"proxy.DefaultRetryRatio":               proxy.DefaultRetryRatio,
	"proxy.DefaultRetryMinPerSecond":        proxy.DefaultRetryMinPerSecond,
	"healthcheck.DefaultInterval":           healthcheck.DefaultInterval,
	"healthcheck.DefaultTimeout":            healthcheck.DefaultTimeout,
	"healthcheck.DefaultHealthyThreshold":   healthcheck.DefaultHealthyThreshold,
	"healthcheck.DefaultUnhealthyThreshold": healthcheck.DefaultUnhealthyThreshold,
	"healthcheck.DefaultEjectionFailures":   healthcheck.DefaultEjectionFailures,
	"healthcheck.DefaultEjectionPeriod":     healthcheck.DefaultEjectionPeriod,
	"healthcheck.DefaultMaxEjectedPercent":  healthcheck.DefaultMaxEjectedPercent,
	"sticky.DefaultDuration":                sticky.DefaultDuration,
	"sticky.DefaultStoreTimeout":            sticky.DefaultStoreTimeout,
	"sticky.MaxDuration":                    sticky.MaxDuration,
	"sticky.DefaultCookieName":              sticky.DefaultCookieName,
	"sticky.DefaultCapacity":                sticky.DefaultCapacity,
	"sticky.MaxCapacity":                    sticky.MaxCapacity,
	"sticky.MinKeyLen":                      sticky.MinKeyLen,
	"balancer.DefaultWeight":                balancer.DefaultWeight,
	"balancer.MaxWeight":                    balancer.MaxWeight,
}

// format writes a constant's value as configuration.md does.
func format(v any) string {
	switch x := v.(type) {
	case time.Duration:
		switch {
		case x%(24*time.Hour) == 0:
			return fmt.Sprintf("%d days", x/(24*time.Hour))
		case x >= 10*time.Minute && x%time.Minute == 0:
			return fmt.Sprintf("%d min", x/time.Minute)
		case x%time.Second == 0:
			return fmt.Sprintf("%d s", x/time.Second)
		}
		return fmt.Sprintf("%d ms", x/time.Millisecond)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case string:
		return strconv.Quote(x)
	}
	return fmt.Sprint(v)
}

var (
	quotedConstant = regexp.MustCompile("`((?:lb|proxy|flowtable|healthcheck|sticky|balancer)\\.(?:Default|Max|Min)\\w*)`( \\(([^)]*)\\))?")
)

// TestConfigurationConstants checks every constant configuration.md quotes
// with a value, in its tables ("`pkg.Name` (value)") and in its list of
// constants, against the code.
func TestConfigurationConstants(t *testing.T) {
	doc := readFile(t, "docs/configuration.md")
	n := 0
	for _, m := range quotedConstant.FindAllStringSubmatch(doc, -1) {
		v, ok := constants[m[1]]
		if !assert.True(t, ok, "configuration.md quotes %s, which the test does not know: add it to constants", m[1]) || m[2] == "" {
			continue
		}
		assert.Equal(t, format(v), m[3], "the value of %s in configuration.md", m[1])
		n++
	}
	for _, s := range sections(doc) {
		if s.heading != "Constants" {
			continue
		}
		_, rows := s.rows()
		for _, r := range rows {
			v, ok := constants[r.key()]
			if assert.True(t, ok, "the constants table lists %s, which the test does not know", r.key()) {
				assert.Equal(t, format(v), r.cells[1], "the value of %s in the constants table", r.key())
				n++
			}
		}
	}
	assert.Greater(t, n, len(constants), "the constants are quoted with their values")
}

// rangeChecks build a configuration with one value of a documented range.
// Every row of the library tables whose range starts "a..b" needs one: the
// test then tries a and b (accepted), b+1 and a-1 (refused), and 0 or -1
// where the row says they take the default.
var rangeChecks = map[string]func(v int) []lb.Option{
	"lb.GroupOption/WithProxyProtocol": func(v int) []lb.Option {
		return tcpGroup(lb.WithTarget("127.0.0.1:1"), lb.WithoutHealthCheck(), lb.WithProxyProtocol(v))
	},
	"lb.TargetOption/WithWeight": func(v int) []lb.Option {
		return tcpGroup(lb.WithTarget("127.0.0.1:1", lb.WithWeight(v)), lb.WithoutHealthCheck())
	},
	"lb.HealthCheck/Port": func(v int) []lb.Option {
		return tcpGroup(lb.WithTarget("127.0.0.1:1"), lb.WithHealthCheck(lb.HealthCheck{Port: v}))
	},
	"lb.HealthCheck/HealthyThreshold": func(v int) []lb.Option {
		return tcpGroup(lb.WithTarget("127.0.0.1:1"), lb.WithHealthCheck(lb.HealthCheck{HealthyThreshold: v}))
	},
	"lb.HealthCheck/UnhealthyThreshold": func(v int) []lb.Option {
		return tcpGroup(lb.WithTarget("127.0.0.1:1"), lb.WithHealthCheck(lb.HealthCheck{UnhealthyThreshold: v}))
	},
	"lb.Stickiness/Capacity": func(v int) []lb.Option {
		return tcpGroup(lb.WithTarget("127.0.0.1:1"), lb.WithoutHealthCheck(), lb.WithStickiness(lb.Stickiness{Kind: lb.SourceIP, Capacity: v}))
	},
	"lb.Stickiness/PrefixV4": func(v int) []lb.Option {
		s := lb.Stickiness{Kind: lb.SourceIP}
		if v != 0 {
			s.PrefixV4, s.PrefixV6 = v, 128
		}
		return tcpGroup(lb.WithTarget("127.0.0.1:1"), lb.WithoutHealthCheck(), lb.WithStickiness(s))
	},
	"lb.Stickiness/PrefixV6": func(v int) []lb.Option {
		s := lb.Stickiness{Kind: lb.SourceIP}
		if v != 0 {
			s.PrefixV4, s.PrefixV6 = 32, v
		}
		return tcpGroup(lb.WithTarget("127.0.0.1:1"), lb.WithoutHealthCheck(), lb.WithStickiness(s))
	},
	"lb.GroupWeight/Weight": func(v int) []lb.Option {
		return httpListener(lb.WithForwardTo("g"), lb.WithRules(lb.Rule{Path: "/a/*", Split: []lb.GroupWeight{{Group: "g", Weight: v}, {Group: "g2", Weight: 1}}}))
	},
	"proxy.Redirect/Port": func(v int) []lb.Option {
		return httpListener(lb.WithDefaultRedirect(proxy.Redirect{Scheme: "https", Port: v}))
	},
	"proxy.FixedResponse/Status": func(v int) []lb.Option {
		return httpListener(lb.WithDefaultFixed(proxy.FixedResponse{Status: v}))
	},
}

// tcpGroup is a TCP listener forwarding to group g with opts.
func tcpGroup(opts ...lb.GroupOption) []lb.Option {
	return []lb.Option{
		lb.WithListener("l", lb.TCP, "127.0.0.1:0", lb.WithForwardTo("g")),
		lb.WithTargetGroup("g", lb.TCP, opts...),
	}
}

// httpListener is an HTTP listener with opts and two HTTP groups, g and g2.
func httpListener(opts ...lb.ListenerOption) []lb.Option {
	return []lb.Option{
		lb.WithListener("l", lb.HTTP, "127.0.0.1:0", opts...),
		lb.WithTargetGroup("g", lb.HTTP, lb.WithTarget("127.0.0.1:1"), lb.WithoutHealthCheck()),
		lb.WithTargetGroup("g2", lb.HTTP, lb.WithTarget("127.0.0.1:2"), lb.WithoutHealthCheck()),
	}
}

var docRange = regexp.MustCompile(`^(\d+)\.\.(\d+)`)

// TestConfigurationRanges checks the numeric ranges the library tables
// give ("a..b") against what lb.New and Start accept.
func TestConfigurationRanges(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	accepts := func(opts []lb.Option) error {
		l, err := lb.New(append(opts, lb.WithLogger(quiet))...)
		if err != nil {
			return err
		}
		defer l.Close()
		return l.Start()
	}
	lib, _, _ := configSections(t)
	checked := map[string]bool{}
	for _, s := range lib {
		header, rows := s.rows()
		col := slices.Index(header, "range")
		if col < 0 {
			continue
		}
		for _, r := range rows {
			m := docRange.FindStringSubmatch(r.cells[col])
			if m == nil {
				continue
			}
			name, _, _ := strings.Cut(r.key(), "(")
			key := s.pkg + "." + s.typ + "/" + name
			build, ok := rangeChecks[key]
			if !assert.True(t, ok, "configuration.md gives %s the range %q: add a check to rangeChecks", key, r.cells[col]) {
				continue
			}
			checked[key] = true
			lo, _ := strconv.Atoi(m[1])
			hi, _ := strconv.Atoi(m[2])
			cell := r.cells[col]
			leZero := strings.Contains(cell, "≤ 0: default")
			zero := leZero || strings.Contains(cell, "0: default")
			t.Run(key, func(t *testing.T) {
				for _, v := range []int{lo, hi} {
					assert.NoError(t, accepts(build(v)), "%d is in the documented range %q", v, cell)
				}
				assert.Error(t, accepts(build(hi+1)), "%d is above the documented range %q", hi+1, cell)
				switch {
				case zero && lo == 1:
					assert.NoError(t, accepts(build(0)), "0 takes the default (%q)", cell)
					if leZero {
						assert.NoError(t, accepts(build(-1)), "a negative value takes the default (%q)", cell)
					} else {
						assert.Error(t, accepts(build(-1)), "-1 is below the documented range %q", cell)
					}
				case zero:
					assert.NoError(t, accepts(build(0)), "0 takes the default (%q)", cell)
					assert.Error(t, accepts(build(lo-1)), "%d is below the documented range %q", lo-1, cell)
				default:
					assert.Error(t, accepts(build(lo-1)), "%d is below the documented range %q", lo-1, cell)
				}
			})
		}
	}
	for key := range rangeChecks {
		assert.True(t, checked[key], "rangeChecks has %s, whose row in configuration.md gives no a..b range", key)
	}
}

// yamlStruct returns the yaml keys of a struct of the config package, with
// each field's type expression.
func yamlStruct(ts *ast.TypeSpec) ([]string, []ast.Expr, bool) {
	st, ok := ts.Type.(*ast.StructType)
	if !ok {
		return nil, nil, false
	}
	var names []string
	var types []ast.Expr
	for _, f := range st.Fields.List {
		if f.Tag == nil {
			continue
		}
		tag, err := strconv.Unquote(f.Tag.Value)
		if err != nil {
			continue
		}
		v, ok := reflectTag(tag, "yaml")
		if !ok || v == "-" {
			continue
		}
		name, _, _ := strings.Cut(v, ",")
		names = append(names, name)
		types = append(types, f.Type)
	}
	return names, types, len(names) > 0
}

// reflectTag is reflect.StructTag.Lookup on a tag's text.
func reflectTag(tag, key string) (string, bool) {
	for tag != "" {
		tag = strings.TrimLeft(tag, " ")
		i := strings.Index(tag, ":")
		if i < 0 {
			return "", false
		}
		name := tag[:i]
		rest := tag[i+1:]
		v, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return "", false
		}
		tag = rest[len(v):]
		if name == key {
			s, _ := strconv.Unquote(v)
			return s, true
		}
	}
	return "", false
}

// TestConfigurationYAML checks the daemon part of configuration.md against
// the config package: a section for every struct of the file, named by
// the paths where it appears, listing exactly its keys.
func TestConfigurationYAML(t *testing.T) {
	cfg := parsePkg(t, "config")
	_, docs, _ := configSections(t)

	// Every struct reachable from File, with the paths it appears at.
	paths := map[string][]string{}
	var walk func(typ, path string, depth int)
	walk = func(typ, path string, depth int) {
		require.Less(t, depth, 10, "the YAML types nest too deep (a cycle?) at %s", path)
		paths[typ] = append(paths[typ], path)
		names, types, _ := yamlStruct(cfg.types[typ])
		for i, name := range names {
			sub := name
			if path != "" {
				sub = path + "." + name
			}
			e := types[i]
			if s, ok := e.(*ast.StarExpr); ok {
				e = s.X
			}
			if a, ok := e.(*ast.ArrayType); ok {
				sub += "[]"
				e = a.Elt
			}
			if id, ok := e.(*ast.Ident); ok && cfg.types[id.Name] != nil {
				if _, _, ok := yamlStruct(cfg.types[id.Name]); ok {
					walk(id.Name, sub, depth+1)
				}
			}
		}
	}
	require.Contains(t, cfg.types, "File", "config.File is the root of the file")
	walk("File", "", 0)
	for name, ts := range cfg.types {
		if _, _, ok := yamlStruct(ts); ok && ast.IsExported(name) {
			assert.Contains(t, paths, name, "config.%s has yaml keys but is not reachable from config.File", name)
		}
	}

	// lbd's integrations: sections config's extension points let the
	// daemon read (config.WithCertificateFactory, config.WithSection),
	// decoded by types of cmd/lbd, at the paths where lbd registers them.
	lbd := parsePkg(t, "cmd/lbd")
	lbdPaths := map[string]string{"acmeSection": "listeners[].certificates[].acme", "tracingSection": "tracing"}
	lbdDocumented := map[string]bool{}
	documented := map[string]bool{}
	for _, s := range docs {
		if s.pkg == "lbd" {
			want, ok := lbdPaths[s.typ]
			if !assert.True(t, ok, "section %q: lbd's %s is not one of its integrations' sections", s.heading, s.typ) {
				continue
			}
			lbdDocumented[s.typ] = true
			assert.Equal(t, []string{want}, s.paths, "section %q names the path of lbd's %s", s.heading, s.typ)
			names, _, _ := yamlStruct(lbd.types[s.typ])
			assert.Equal(t, sorted(names), sorted(keys(s.section)), "section %q lists the keys of lbd's %s", s.heading, s.typ)
			continue
		}
		if !assert.Equal(t, "config", s.pkg, "section %q of the YAML part documents a type of another package", s.heading) {
			continue
		}
		documented[s.typ] = true
		want, ok := paths[s.typ]
		if !assert.True(t, ok, "section %q: config.%s is not part of the file", s.heading, s.typ) {
			continue
		}
		if s.typ != "File" {
			assert.Equal(t, sorted(want), sorted(s.paths), "section %q names the paths where config.%s appears", s.heading, s.typ)
		}
		names, _, _ := yamlStruct(cfg.types[s.typ])
		assert.Equal(t, sorted(names), sorted(keys(s.section)), "section %q lists the keys of config.%s", s.heading, s.typ)
	}
	for typ, ps := range paths {
		assert.True(t, documented[typ], "configuration.md has no section for config.%s (at %v)", typ, ps)
	}
	for typ, p := range lbdPaths {
		assert.True(t, lbdDocumented[typ], "configuration.md has no section for lbd's %s (at %s)", typ, p)
	}
}

// TestConfigurationFlags checks the daemon's command line in
// configuration.md against the flags cmd/lbd defines, with their
// string and boolean defaults.
func TestConfigurationFlags(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(root, "cmd/lbd/*.go"))
	require.NoError(t, err)
	code := map[string]ast.Expr{} // flag name → default
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		collectFlags(f, code)
	}
	require.NotEmpty(t, code, "no flags found in cmd/lbd")

	_, _, flags := configSections(t)
	require.NotEmpty(t, flags.body, "configuration.md has no section for the daemon's command line")
	_, rows := flags.rows()
	doc := map[string]row{}
	for _, r := range rows {
		doc[strings.TrimPrefix(r.key(), "-")] = r
	}
	for name, def := range code {
		r, ok := doc[name]
		if !assert.True(t, ok, "configuration.md does not document lbd's flag -%s", name) {
			continue
		}
		switch d := def.(type) {
		case *ast.BasicLit:
			if s, err := strconv.Unquote(d.Value); err == nil {
				if s == "" {
					assert.Equal(t, "—", r.cells[1], "-%s has no default", name)
				} else {
					assert.Equal(t, "`"+s+"`", r.cells[1], "the default of -%s", name)
				}
			}
		case *ast.Ident: // true, false
			assert.Equal(t, d.Name, r.cells[1], "the default of -%s", name)
		}
	}
	for name := range doc {
		assert.Contains(t, code, name, "configuration.md documents lbd's flag -%s, which lbd does not define", name)
	}
}

// collectFlags adds the flags f defines (flag set method calls with a
// literal name) to code, name → default expression.
func collectFlags(f *ast.File, code map[string]ast.Expr) {
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		name, def := 0, 1
		switch sel.Sel.Name {
		case "StringVar", "BoolVar", "DurationVar", "IntVar", "Int64Var", "UintVar", "Uint64Var", "Float64Var", "TextVar":
			name, def = 1, 2
		case "String", "Bool", "Duration", "Int", "Int64", "Uint", "Uint64", "Float64":
		default:
			return true
		}
		if len(call.Args) <= def {
			return true
		}
		if lit, ok := call.Args[name].(*ast.BasicLit); ok && lit.Kind == token.STRING {
			s, _ := strconv.Unquote(lit.Value)
			code[s] = call.Args[def]
		}
		return true
	})
}
