package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Limits that keep a hostile or broken file from costing more than a
// configuration may: its size, the nodes visited (aliases can multiply
// them), the depth of nesting and the problems reported.
const (
	// MaxFileSize is the largest configuration file read.
	MaxFileSize = 4 << 20
	maxNodes    = 1 << 18
	maxDepth    = 64
	maxProblems = 200
)

// decoder turns a YAML document into a File, field by field, so that every
// problem (unknown field, wrong type, bad duration, key set twice) is
// reported at once with the path of the field it is about. yaml's own
// decoder reports lines only, and stops at the first error of some kinds.
type decoder struct {
	probs *problems
	lines map[string]int // path → line, for problems found later
	nodes int            // nodes visited, against maxNodes
	ext   *extensions    // registered discovery kinds
}

// decode fills f from data, reporting problems to probs.
func decode(data []byte, f *File, probs *problems, lines map[string]int, ext *extensions) {
	if len(data) > MaxFileSize {
		probs.syntax = true
		probs.add("", 0, "the file is %d bytes, over the limit of %d", len(data), MaxFileSize)
		return
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return // an empty file: nothing configured
		}
		line, msg := syntaxError(data, err)
		probs.syntax = true
		probs.add("", line, "%s", msg)
		return
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		line := more.Line
		if err != nil {
			line = 0
		}
		probs.add("", line, "more than one YAML document (--- separates documents); want one")
		return
	}
	d := &decoder{probs: probs, lines: lines, ext: ext}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	d.value(root, reflect.ValueOf(f).Elem(), "", 0)
}

// syntaxError returns the line of a YAML syntax error and its message.
// The YAML library reports the line where the enclosing construct began (a
// tab on line 4 is "line 3", a bad indentation on line 37 may be "line 17"),
// so the line is found again: it is the first line whose prefix of the file
// does not parse, for a reason other than being cut short. It returns the
// library's line when no prefix says better (a file of more than
// maxSyntaxLines lines is not searched).
func syntaxError(data []byte, err error) (int, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	libLine := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if l, perr := strconv.Atoi(n); perr == nil {
				libLine, msg = l, after
			}
		}
	}
	const tab = "a tab character in the indentation; YAML indents with spaces only"
	if strings.Contains(msg, "tab character") {
		msg = tab
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > maxSyntaxLines {
		return libLine, msg
	}
	end := 0
	for i, l := range lines {
		end += len(l)
		var n yaml.Node
		perr := yaml.Unmarshal(data[:end], &n)
		if perr == nil || truncated(perr) {
			continue
		}
		if indent := l[:len(l)-len(bytes.TrimLeft(l, " \t"))]; bytes.ContainsRune(indent, '\t') {
			msg = tab
		}
		return i + 1, msg
	}
	return libLine, msg
}

// maxSyntaxLines bounds the search of syntaxError: each line costs a parse
// of the file up to it.
const maxSyntaxLines = 5000

// truncated reports whether a YAML error is one a file cut at a line's end
// may have while the whole file is fine: an open quote or bracket.
func truncated(err error) bool {
	m := err.Error()
	for _, s := range []string{"end of stream", "did not find expected ',' or", "did not find expected node content", "found unexpected end"} {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	discoveryType   = reflect.TypeFor[Discovery]()
	stickyStoreType = reflect.TypeFor[StickyStore]()
	certificateType = reflect.TypeFor[Certificate]()
	fileType        = reflect.TypeFor[File]()
)

// value decodes n into v, the field at path.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string, depth int) {
	n, ok := d.resolve(n, path, depth)
	if !ok || isNull(n) {
		return
	}
	if _, seen := d.lines[path]; !seen {
		d.lines[path] = n.Line
	}
	t := v.Type()
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		d.leaf(n, v, path)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		before := d.probs.count()
		d.value(n, p.Elem(), path, depth+1)
		// A section (a struct) is kept even with problems inside, so its
		// other fields are still checked; a value that could not be read
		// stays unset rather than becoming its zero (enabled: perhaps
		// must not turn health checks off).
		if p.Elem().Kind() == reflect.Struct || d.probs.count() == before {
			v.Set(p)
		}
	case reflect.Struct:
		d.object(n, v, path, depth)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.probs.add(path, n.Line, "is a %s, want a list", kindName(n))
			return
		}
		if len(n.Content) == 0 {
			return // an empty list is a list left out
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.value(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i), depth+1)
		}
		v.Set(s)
	default:
		d.leaf(n, v, path)
	}
}

// resolve follows aliases and counts the node against the limits.
func (d *decoder) resolve(n *yaml.Node, path string, depth int) (*yaml.Node, bool) {
	for i := 0; n.Kind == yaml.AliasNode; i++ {
		if n.Alias == nil || i > maxDepth {
			d.probs.add(path, n.Line, "alias *%s leads nowhere", n.Value)
			return nil, false
		}
		n = n.Alias
	}
	d.nodes++
	if d.nodes > maxNodes || depth > maxDepth {
		if d.nodes == maxNodes+1 || depth == maxDepth+1 {
			d.probs.add(path, n.Line, "the document is too large or too deep once its aliases are expanded")
		}
		return nil, false
	}
	return n, true
}

// object decodes a mapping into the struct v.
func (d *decoder) object(n *yaml.Node, v reflect.Value, path string, depth int) {
	if n.Kind != yaml.MappingNode {
		d.probs.add(path, n.Line, "is a %s, want a mapping of %s", kindName(n), fieldList(v.Type()))
		return
	}
	seen := map[string]int{} // key → line
	for _, kv := range d.pairs(n, path, depth) {
		k, val := kv[0], kv[1]
		name := k.Value
		at := join(path, name)
		if k.Kind != yaml.ScalarNode {
			d.probs.add(path, k.Line, "a key is a %s, want a field name", kindName(k))
			continue
		}
		f, ok := fieldByTag(v.Type(), name)
		if !ok {
			if m := d.ext.extension(v, name); m != nil {
				// A section of a kind a program registered.
				if line, dup := seen[name]; dup {
					d.probs.add(at, k.Line, "is set twice (first on line %d)", line)
					continue
				}
				seen[name] = k.Line
				d.lines[at] = k.Line
				if *m == nil {
					*m = map[string]*yaml.Node{}
				}
				(*m)[name] = val
				continue
			}
		}
		if !ok {
			msg := "unknown field"
			known := fieldList(v.Type())
			if ext := d.ext.known(v.Type()); len(ext) > 0 {
				known = strings.Join(append(strings.Split(known, ", "), ext...), ", ")
			}
			if s := suggest(name, v.Type()); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			} else {
				msg += " (known: " + known + ")"
			}
			d.probs.add(at, k.Line, "%s", msg)
			continue
		}
		if line, dup := seen[name]; dup {
			d.probs.add(at, k.Line, "is set twice (first on line %d)", line)
			continue
		}
		seen[name] = k.Line
		d.lines[at] = k.Line
		d.value(val, v.FieldByIndex(f.Index), at, depth+1)
	}
}

// pairs returns a mapping's key/value pairs with YAML merge keys ("<<:
// *defaults") expanded: merged pairs come first, so the mapping's own keys
// override them.
func (d *decoder) pairs(n *yaml.Node, path string, depth int) [][2]*yaml.Node {
	var merged, own [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!merge" {
			own = append(own, [2]*yaml.Node{k, v})
			continue
		}
		v, ok := d.resolve(v, path, depth+1)
		if !ok {
			continue
		}
		sources := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			sources = v.Content
		}
		for _, s := range sources {
			s, ok := d.resolve(s, path, depth+1)
			if !ok {
				continue
			}
			if s.Kind != yaml.MappingNode {
				d.probs.add(path, s.Line, "a merge (<<) is of a %s, want a mapping", kindName(s))
				continue
			}
			for _, kv := range d.pairs(s, path, depth+1) {
				if !slices.ContainsFunc(merged, func(m [2]*yaml.Node) bool { return m[0].Value == kv[0].Value }) {
					merged = append(merged, kv)
				}
			}
		}
	}
	// The mapping's own keys win over merged ones of the same name.
	out := slices.DeleteFunc(merged, func(m [2]*yaml.Node) bool {
		return slices.ContainsFunc(own, func(o [2]*yaml.Node) bool { return o[0].Value == m[0].Value })
	})
	return append(out, own...)
}

// leaf decodes a scalar with yaml's own rules, reporting a failure in
// words.
func (d *decoder) leaf(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.probs.add(path, n.Line, "is a %s, want %s", kindName(n), want(v.Type()))
		return
	}
	p := reflect.New(v.Type())
	if err := n.Decode(p.Interface()); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			d.probs.add(path, n.Line, "%s is not %s", quoteValue(n.Value), want(v.Type()))
		} else {
			d.probs.add(path, n.Line, "%v", err)
		}
		return
	}
	v.Set(p.Elem())
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// kindName names a node's kind for people.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "value (" + quoteValue(n.Value) + ")"
	}
	return "node"
}

// want names what a type takes, for people.
func want(t reflect.Type) string {
	if t == reflect.TypeFor[Duration]() {
		return "a duration such as \"5s\""
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	}
	return t.String()
}

// quoteValue quotes a value for a message, shortened if long.
func quoteValue(s string) string {
	const max = 40
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// yamlName returns a field's name in the file and whether it has one.
func yamlName(f reflect.StructField) (string, bool) {
	tag, ok := f.Tag.Lookup("yaml")
	if !ok || !f.IsExported() {
		return "", false
	}
	name, _, _ := strings.Cut(tag, ",")
	return name, name != "" && name != "-"
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if n, ok := yamlName(f); ok && n == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// fieldList lists a struct's field names in the file.
func fieldList(t reflect.Type) string {
	var names []string
	for i := range t.NumField() {
		if n, ok := yamlName(t.Field(i)); ok {
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}

// suggest returns the field name closest to a misspelt one, or "".
func suggest(name string, t reflect.Type) string {
	best, bestDist := "", 3 // suggest only within 2 edits
	for i := range t.NumField() {
		n, ok := yamlName(t.Field(i))
		if !ok {
			continue
		}
		if dist := editDistance(strings.ToLower(name), n); dist < bestDist {
			best, bestDist = n, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
