package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/lbkit/lbkit/lb"
)

// lb reports each problem as an *lb.FieldError: the object (kind, name,
// position), the setting by its Go name, and the cause. These tables map
// them to the path of the field in the file; nothing here reads lb's
// message, which is reported as it is.

// lbField is where one of lb's settings is in the file, below its object's
// path, and the words that name the file's fields where lb's message
// names none.
type lbField struct {
	path string // ".forward_to"; "" for the object itself
	hint string // " (forward_to, redirect or fixed)"
}

// lbFields maps each kind of object's settings (lb.FieldError.Field) to the
// file. A field missing here is reported at its object's path; a field
// with list positions or below a struct ("Split[1].Group",
// "HealthCheck.Port") is looked up by its first step, then the rest is
// turned into the file's names with lbNames.
var lbFields = map[lb.Kind]map[string]lbField{
	lb.KindLoadBalancer: {
		"MaxFlows":          {path: "flows.max"},
		"MaxFlowsPerSource": {path: "flows.max_per_source"},
		"DescriptorBudget":  {path: "flows.descriptor_budget"},
		"UnrepliedTimeout":  {path: "flows.unreplied_timeout"},
	},
	lb.KindListener: {
		"Name":            {path: ".name"},
		"Protocol":        {path: ".protocol"},
		"Addr":            {path: ".address"},
		"ForwardTo":       {path: ".forward_to"},
		"DefaultAction":   {hint: " (forward_to, redirect or fixed)"},
		"Rules":           {path: ".rules"},
		"Allow":           {path: ".allow"},
		"Deny":            {path: ".deny"},
		"TrustedProxies":  {path: ".trusted_proxies"},
		"IdleTimeout":     {path: ".idle_timeout"},
		"ConnectTimeout":  {path: ".connect_timeout"},
		"ConnectAttempts": {path: ".connect_attempts"},
		"HeaderTimeout":   {path: ".header_timeout"},
		"RequestTimeout":  {path: ".request_timeout"},
		"ResponseTimeout": {path: ".response_timeout"},
		"MaxHeaderBytes":  {path: ".max_header_bytes"},
		"MaxBodyBytes":    {path: ".max_body_bytes"},
		"MaxURILength":    {path: ".max_uri_length"},
		"Retries":         {path: ".retry"},
		"FlowLog":         {path: ".flow_log"},
		"Certificates":    {path: ".certificates", hint: " (certificates)"},
		"MinTLSVersion":   {path: ".tls.min_version"},
		"CipherSuites":    {path: ".tls.cipher_suites"},
		"ClientAuth":      {path: ".tls.client_auth"},
		"WildcardMatch":   {path: ".tls.wildcard"},
	},
	lb.KindRule: {
		"Forward": {path: ".forward"},
		"Split":   {path: ".split"},
	},
	lb.KindTargetGroup: {
		"Name":                  {path: ".name"},
		"Protocol":              {path: ".protocol"},
		"Algorithm":             {path: ".algorithm"},
		"Stickiness":            {path: ".stickiness.kind"},
		"Stickiness.Kind":       {path: ".stickiness.kind"},
		"Stickiness.CookieName": {path: ".stickiness.cookie_name", hint: " (cookie_name)"},
		"Stickiness.Duration":   {path: ".stickiness.duration"},
		"Stickiness.Store":      {path: ".stickiness.store"},
		"ProxyProtocol":         {path: ".proxy_protocol"},
		"TargetTLS":             {path: ".tls"},
		"Discovery":             {path: ".discovery"},
		"PassiveEjection":       {path: ".passive_ejection"},
		"CircuitBreaker":        {path: ".circuit_breaker"},
		"HealthCheck":           {path: ".health_check"},
	},
	lb.KindTarget: {
		"Addr":   {path: ".address"},
		"ID":     {path: ".id"},
		"Weight": {path: ".weight"},
	},
}

// lbNames turns the Go names of the steps of a field below the first into
// the file's ("Split[1].Group" → "split[1].group").
var lbNames = map[string]string{
	"Split": "split", "Group": "group", "Weight": "weight",
	"Attempts": "attempts", "Timeout": "timeout", "Ratio": "ratio", "MinPerSecond": "min_per_second",
	"Protocol": "protocol", "Port": "port", "Path": "path", "Status": "status", "Interval": "interval",
	"HealthyThreshold": "healthy_threshold", "UnhealthyThreshold": "unhealthy_threshold",
}

// lbProblems records lb's validation problems at the paths of the fields
// they are about, skipping those the compiler already reported there.
func (c *compiler) lbProblems(err error) {
	for _, e := range lbLeaves(err) {
		var fe *lb.FieldError
		if !errors.As(e, &fe) {
			c.add("", "%s", e.Error())
			continue
		}
		path, hint := c.lbPath(fe)
		if c.probs.hasExact(path) {
			continue
		}
		c.add(path, "%s%s", fe.Err.Error(), hint)
	}
}

// lbLeaves returns lb's problems one by one (lb joins them with
// errors.Join).
func lbLeaves(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		if _, one := err.(*lb.FieldError); !one {
			var out []error
			for _, e := range j.Unwrap() {
				out = append(out, lbLeaves(e)...)
			}
			return out
		}
	}
	return []error{err}
}

// lbPath returns the path in the file of the field a problem is about, and
// the words to add to lb's message.
func (c *compiler) lbPath(fe *lb.FieldError) (path, hint string) {
	obj, ok := c.lbObject(fe.Object, fe.Parent)
	if !ok {
		return "", ""
	}
	if fe.Field == "" {
		return obj, ""
	}
	fields := lbFields[fe.Kind]
	if f, ok := fields[fe.Field]; ok {
		return obj + f.path, f.hint
	}
	first, rest, _ := strings.Cut(fe.Field, ".")
	name, index, _ := strings.Cut(first, "[")
	f, ok := fields[name]
	if !ok {
		return obj, ""
	}
	path = obj + f.path
	if index != "" {
		path += "[" + index
	}
	for step := range strings.SplitSeq(rest, ".") {
		if step == "" {
			continue
		}
		n, i, _ := strings.Cut(step, "[")
		yn, ok := lbNames[n]
		if !ok {
			return path, f.hint
		}
		path += "." + yn
		if i != "" {
			path += "[" + i
		}
	}
	return path, f.hint
}

// lbObject returns the path of an object lb names, found by its position
// among those the compiler gave lb (or by its name when lb gives none).
func (c *compiler) lbObject(o, parent lb.Object) (string, bool) {
	switch o.Kind {
	case lb.KindLoadBalancer:
		return "", true
	case lb.KindListener:
		i, ok := c.lbIndex(o, c.listeners, c.listenerPos)
		return fmt.Sprintf("listeners[%d]", i), ok
	case lb.KindTargetGroup:
		i, ok := c.lbIndex(o, c.groups, c.groupPos)
		return fmt.Sprintf("target_groups[%d]", i), ok
	case lb.KindTarget:
		g, ok := c.lbIndex(parent, c.groups, c.groupPos)
		if !ok {
			return "", false
		}
		path := fmt.Sprintf("target_groups[%d].targets", g)
		if pos := c.targetPos[g]; o.Index >= 0 && o.Index < len(pos) {
			path = fmt.Sprintf("%s[%d]", path, pos[o.Index])
		}
		return path, true
	case lb.KindRule:
		l, ok := c.lbIndex(parent, c.listeners, c.listenerPos)
		if !ok {
			return "", false
		}
		path := fmt.Sprintf("listeners[%d].rules", l)
		if pos := c.rulePos[l]; o.Index >= 0 && o.Index < len(pos) {
			path = fmt.Sprintf("%s[%d]", path, pos[o.Index])
		}
		return path, true
	}
	return "", false
}

// lbIndex finds an object in the file from its position among those lb was
// given or, failing that, its name.
func (c *compiler) lbIndex(o lb.Object, byName map[string]int, byPos []int) (int, bool) {
	if o.Index >= 0 && o.Index < len(byPos) {
		return byPos[o.Index], true
	}
	i, ok := byName[o.Name]
	return i, ok
}
