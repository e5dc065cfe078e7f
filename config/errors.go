package config

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is matched (errors.Is) by every error that reports an invalid
// configuration, an *Error.
var ErrInvalid = errors.New("invalid configuration")

// Problem is one thing wrong with a configuration, anchored at the field
// it is about.
type Problem struct {
	// Path names the field as it is written in the file, objects by their
	// name where they have one that is unique among their siblings (a
	// target by its id, else its address) and by their position in their
	// list otherwise: "listeners[web].address",
	// "target_groups[app].targets[10.0.0.3:80].weight",
	// "listeners[2].rules[0].path"; empty for the file as a whole.
	Path string
	// Line is the line of the file the field is on, 1-based; 0 when the
	// field is not in the file (it was left out) or the File was built in
	// Go.
	Line int
	// Message says what is wrong, naming the value:
	// "150 is out of range 0..100".
	Message string
}

// Error returns "path: message (line N)", without what is unknown.
func (p Problem) Error() string {
	var b strings.Builder
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	if p.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", p.Line)
	}
	return b.String()
}

// Error is an invalid configuration: every problem found, in the order of
// the file. It matches ErrInvalid.
type Error struct {
	// File is the configuration file's name; empty for Parse.
	File string
	// Problems lists every problem, in the order of the file (problems
	// about fields left out come last).
	Problems []Problem
}

// Error lists the problems one per line.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if len(e.Problems) == 1 {
		b.WriteString(e.Problems[0].Error())
		return b.String()
	}
	fmt.Fprintf(&b, "%d problems:", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n\t")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Unwrap returns the problems, one error each.
func (e *Error) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// Is reports whether target is ErrInvalid.
func (e *Error) Is(target error) bool { return target == ErrInvalid }
