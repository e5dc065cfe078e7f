package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// problems collects a configuration's problems.
type problems struct {
	list   []Problem
	extra  int  // problems beyond maxProblems, counted only
	syntax bool // the file is not YAML: nothing else was checked
}

// add records a problem about the field at path, found on line (0:
// unknown).
func (p *problems) add(path string, line int, format string, a ...any) {
	if len(p.list) >= maxProblems {
		p.extra++
		return
	}
	p.list = append(p.list, Problem{Path: path, Line: line, Message: fmt.Sprintf(format, a...)})
}

// count returns the number of problems recorded.
func (p *problems) count() int { return len(p.list) + p.extra }

// err returns the problems as an *Error in file order, or nil, with
// their paths naming f's objects (see File.named; f may be nil).
func (p *problems) err(file string, f *File) error {
	if len(p.list) == 0 {
		return nil
	}
	list := slices.Clone(p.list)
	for i := range list {
		list[i].Path = f.named(list[i].Path)
	}
	slices.SortStableFunc(list, func(a, b Problem) int {
		// Problems with no line (fields left out, lb's whole-object
		// findings) go after those in the file.
		if (a.Line == 0) != (b.Line == 0) {
			if a.Line == 0 {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.Line, b.Line)
	})
	if p.extra > 0 {
		list = append(list, Problem{Message: fmt.Sprintf("and %d more problems", p.extra)})
	}
	return &Error{File: file, Problems: list}
}

// hasUnder reports whether a problem was recorded below path.
func (p *problems) hasUnder(path string) bool {
	return slices.ContainsFunc(p.list, func(q Problem) bool { return strings.HasPrefix(q.Path, path+".") })
}

// hasExact reports whether a problem was recorded at exactly path.
func (p *problems) hasExact(path string) bool {
	return slices.ContainsFunc(p.list, func(q Problem) bool { return q.Path == path })
}
