package config

import (
	"cmp"
	"regexp"
	"strconv"
	"strings"
)

// Problems are found at paths with list positions ("target_groups[0]"),
// and reported at paths that name objects by their name or id where they
// have one that is unique among their siblings and fits in a path
// ("target_groups[web]"): that is what a reader finds in the file.

// pathIndex matches one "key[n]" step of a path.
var pathIndex = regexp.MustCompile(`^([a-z_]+)\[(\d+)\]$`)

// named returns path with the positions of named objects replaced by their
// names: listeners and target groups by name, a group's targets by id (or
// address), a listener's rules by name.
func (f *File) named(path string) string {
	if f == nil || path == "" {
		return path
	}
	steps := strings.Split(path, ".")
	var listener *Listener
	var group *TargetGroup
	for i, st := range steps {
		m := pathIndex.FindStringSubmatch(st)
		if m == nil {
			continue
		}
		k, _ := strconv.Atoi(m[2])
		var names []string
		switch {
		case i == 0 && m[1] == "listeners" && k < len(f.Listeners):
			listener = &f.Listeners[k]
			for _, l := range f.Listeners {
				names = append(names, l.Name)
			}
		case i == 0 && m[1] == "target_groups" && k < len(f.TargetGroups):
			group = &f.TargetGroups[k]
			for _, g := range f.TargetGroups {
				names = append(names, g.Name)
			}
		case i == 1 && m[1] == "targets" && group != nil && k < len(group.Targets):
			for _, t := range group.Targets {
				names = append(names, cmp.Or(t.ID, t.Address))
			}
		case i == 1 && m[1] == "rules" && listener != nil && k < len(listener.Rules):
			for _, r := range listener.Rules {
				names = append(names, r.Name)
			}
		default:
			continue
		}
		if n := names[k]; usableName(n, names) {
			steps[i] = m[1] + "[" + n + "]"
		}
	}
	return strings.Join(steps, ".")
}

// usableName reports whether n can stand for its object in a path: set,
// unique among its siblings, not a number, without brackets or spaces.
func usableName(n string, siblings []string) bool {
	if n == "" || strings.ContainsAny(n, "[] \t\n") {
		return false
	}
	if _, err := strconv.Atoi(n); err == nil {
		return false // would read as a position
	}
	seen := 0
	for _, s := range siblings {
		if s == n {
			seen++
		}
	}
	return seen == 1
}
