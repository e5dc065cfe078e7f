package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// lb's problems name objects the way its API does (`listener "web": ...`,
// `target group "app": target[2] "10.0.0.1:80": ...`, `rule[1]: ...`). These
// patterns take them apart so that each is reported at the path of the field
// in the file.
var (
	quoted     = `"(?:[^"\\]|\\.)*"`
	reListener = regexp.MustCompile(`^listener (?:(` + quoted + `)|#(\d+)): (.*)$`)
	reGroup    = regexp.MustCompile(`^target group (?:(` + quoted + `)|#(\d+)): (.*)$`)
	reTarget   = regexp.MustCompile(`^target\[(\d+)\](?: ` + quoted + `)?: (.*)$`)
	reRule     = regexp.MustCompile(`^rule\[(\d+)\]: (.*)$`)
	reRuleName = regexp.MustCompile(`^invalid rule: (` + quoted + `): (.*)$`)
	reRulesDup = regexp.MustCompile(`^invalid rule: rules ` + quoted + ` and (` + quoted + `) are identical`)
	reForwards = regexp.MustCompile(`target group (` + quoted + `)`)
)

// lb's messages name its API; a configuration's reader knows the file's
// names.
var apiNames = strings.NewReplacer(
	"(ForwardTo, DefaultRedirect or DefaultFixed)", "(forward_to, redirect or fixed)",
	"(ForwardTo, DefaultRedirect, DefaultFixed)", "(forward_to, redirect, fixed)",
	"(ForwardTo)", "(forward_to)",
	"(Certificates)", "(certificates)",
	"(CookieName)", "(cookie_name)",
	"Forward, Split, Redirect, Fixed", "forward, split, redirect, fixed",
)

// lbProblems records lb's validation problems at the paths of the fields
// they are about, skipping those the compiler already reported there.
func (c *compiler) lbProblems(err error) {
	for _, e := range lbLeaves(err) {
		path, msg := c.lbPath(e.Error())
		msg = apiNames.Replace(msg)
		if c.probs.hasExact(path) {
			continue
		}
		c.add(path, "%s", msg)
	}
}

// lbLeaves returns lb's problems one by one. lb joins them with
// hashicorp/go-multierror (WrappedErrors) or errors.Join (Unwrap).
func lbLeaves(err error) []error {
	if m, ok := err.(interface{ WrappedErrors() []error }); ok {
		var out []error
		for _, e := range m.WrappedErrors() {
			out = append(out, lbLeaves(e)...)
		}
		return out
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, lbLeaves(e)...)
		}
		return out
	}
	var out []error
	for _, line := range strings.Split(err.Error(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, fmt.Errorf("%s", line))
		}
	}
	return out
}

// lbPath maps one of lb's messages to a path and the message without the
// object's name.
func (c *compiler) lbPath(msg string) (string, string) {
	switch {
	case strings.HasPrefix(msg, "max flows per source"):
		return "flows.max_per_source", msg
	case strings.HasPrefix(msg, "descriptor budget"):
		return "flows.descriptor_budget", msg
	case strings.HasPrefix(msg, "unreplied timeout"):
		return "flows.unreplied_timeout", msg
	case strings.HasPrefix(msg, "max flows"):
		return "flows.max", msg
	}
	if m := reListener.FindStringSubmatch(msg); m != nil {
		i, ok := c.index(m[1], m[2], c.listeners, c.listenerPos)
		if !ok {
			return "", msg
		}
		return c.listenerPath(i, m[3])
	}
	if m := reGroup.FindStringSubmatch(msg); m != nil {
		i, ok := c.index(m[1], m[2], c.groups, c.groupPos)
		if !ok {
			return "", msg
		}
		return c.groupPath(i, m[3])
	}
	return "", msg
}

// index finds an object in the file from lb's quoted name or 1-based
// position.
func (c *compiler) index(quotedName, pos string, byName map[string]int, byPos []int) (int, bool) {
	if quotedName != "" {
		name, err := strconv.Unquote(quotedName)
		if err != nil {
			return 0, false
		}
		i, ok := byName[name]
		return i, ok
	}
	n, err := strconv.Atoi(pos)
	if err != nil || n < 1 || n > len(byPos) {
		return 0, false
	}
	return byPos[n-1], true
}

func (c *compiler) listenerPath(i int, msg string) (string, string) {
	path := fmt.Sprintf("listeners[%d]", i)
	l := &c.f.Listeners[i]
	if m := reRule.FindStringSubmatch(msg); m != nil {
		k, _ := strconv.Atoi(m[1])
		pos := c.rulePos[i]
		if k >= len(pos) {
			return path + ".rules", m[2]
		}
		rp := fmt.Sprintf("%s.rules[%d]", path, pos[k])
		r := &l.Rules[pos[k]]
		if f := reForwards.FindStringSubmatch(m[2]); f != nil {
			name, _ := strconv.Unquote(f[1])
			if r.Forward == name {
				return rp + ".forward", m[2]
			}
			for j, s := range r.Split {
				if s.Group == name {
					return fmt.Sprintf("%s.split[%d].group", rp, j), m[2]
				}
			}
		}
		return rp, m[2]
	}
	if m := reRulesDup.FindStringSubmatch(msg); m != nil {
		return path + c.ruleByName(l, m[1]), strings.TrimPrefix(msg, "invalid rule: ")
	}
	if m := reRuleName.FindStringSubmatch(msg); m != nil {
		return path + c.ruleByName(l, m[1]), m[2]
	}
	switch {
	case strings.HasPrefix(msg, "name "):
		return path + ".name", msg
	case strings.HasPrefix(msg, "protocol "):
		return path + ".protocol", msg
	case strings.HasPrefix(msg, "addr "):
		return path + ".address", msg
	case strings.HasPrefix(msg, "trusted proxies"):
		return path + ".trusted_proxies", msg
	case strings.HasPrefix(msg, "idle timeout"):
		return path + ".idle_timeout", msg
	case strings.HasPrefix(msg, "connect timeout"):
		return path + ".connect_timeout", msg
	case strings.Contains(msg, "certificate"):
		return path + ".certificates", msg
	case strings.HasPrefix(msg, "rules are"):
		return path + ".rules", msg
	case strings.Contains(msg, "default action"):
		return path, msg
	case strings.Contains(msg, "forward"), strings.Contains(msg, "stickiness"):
		return path + ".forward_to", msg
	}
	return path, msg
}

// ruleByName returns the path suffix of the rule lb names (by its name, or
// "rule[k]" for an unnamed one).
func (c *compiler) ruleByName(l *Listener, quotedName string) string {
	name, err := strconv.Unquote(quotedName)
	if err != nil {
		return ".rules"
	}
	for k, r := range l.Rules {
		if r.Name == name && name != "" {
			return fmt.Sprintf(".rules[%d]", k)
		}
	}
	var k int
	if _, err := fmt.Sscanf(name, "rule[%d]", &k); err == nil {
		for li, pos := range c.rulePos {
			if &c.f.Listeners[li] == l && k < len(pos) {
				return fmt.Sprintf(".rules[%d]", pos[k])
			}
		}
	}
	return ".rules"
}

func (c *compiler) groupPath(i int, msg string) (string, string) {
	path := fmt.Sprintf("target_groups[%d]", i)
	if m := reTarget.FindStringSubmatch(msg); m != nil {
		k, _ := strconv.Atoi(m[1])
		tp := path + ".targets"
		if pos := c.targetPos[i]; k < len(pos) {
			tp = fmt.Sprintf("%s[%d]", tp, pos[k])
		}
		rest := strings.TrimPrefix(m[2], "invalid target: ")
		switch {
		case strings.HasPrefix(rest, "weight"):
			return tp + ".weight", rest
		case strings.HasPrefix(rest, "addr"):
			return tp + ".address", rest
		case strings.Contains(rest, "id"):
			return tp + ".id", rest
		}
		return tp, rest
	}
	if rest, ok := strings.CutPrefix(msg, "health check: "); ok {
		hp := path + ".health_check"
		for _, f := range []struct{ word, field string }{
			{"protocol", ".protocol"}, {"port", ".port"}, {"status", ".status"},
			{"path", ".path"}, {"timeout", ".timeout"}, {"interval", ".interval"},
		} {
			if strings.HasPrefix(rest, f.word) || strings.Contains(rest, "healthcheck: invalid option: "+f.word) {
				return hp + f.field, strings.TrimPrefix(rest, "healthcheck: invalid option: ")
			}
		}
		return hp, strings.TrimPrefix(rest, "healthcheck: invalid option: ")
	}
	switch {
	case strings.HasPrefix(msg, "name "):
		return path + ".name", msg
	case strings.HasPrefix(msg, "protocol "):
		return path + ".protocol", msg
	case strings.Contains(msg, "algorithm") && !strings.Contains(msg, "stickiness"):
		return path + ".algorithm", strings.TrimPrefix(msg, "invalid option: ")
	case strings.Contains(msg, "CookieName"):
		return path + ".stickiness.cookie_name", msg
	case strings.HasPrefix(msg, "stickiness duration"):
		return path + ".stickiness.duration", msg
	case strings.Contains(msg, "stickiness"):
		return path + ".stickiness.kind", msg
	case strings.HasPrefix(msg, "proxy protocol"):
		return path + ".proxy_protocol", msg
	case strings.HasPrefix(msg, "target TLS"):
		return path + ".tls", msg
	case strings.HasPrefix(msg, "discovery"):
		return path + ".discovery.interval", msg
	case strings.HasPrefix(msg, "passive ejection"):
		return path + ".passive_ejection", msg
	}
	return path, msg
}
