package lb

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrNotFound is wrapped by the error of a call that names a listener,
// target group or target that does not exist: errors.Is(err,
// lb.ErrNotFound). The error is a *FieldError naming the object.
var ErrNotFound = errors.New("does not exist")

// ErrInvalid is wrapped by every configuration problem New, Reconfigure and the
// run-time setters refuse: errors.Is(err, lb.ErrInvalid). Each problem is
// a *FieldError (errors.As) that names the object and the setting; all
// the problems of one configuration are returned together, joined with
// errors.Join.
var ErrInvalid = errors.New("invalid configuration")

// Kind is the kind of object a FieldError is about.
type Kind string

// The kinds of objects of a configuration.
const (
	// KindLoadBalancer is the load balancer as a whole (its flow limits).
	KindLoadBalancer Kind = "load balancer"
	// KindListener is a listener (WithListener).
	KindListener Kind = "listener"
	// KindTargetGroup is a target group (WithTargetGroup).
	KindTargetGroup Kind = "target group"
	// KindTarget is a target of a group (WithTarget); its Name is the
	// target's id.
	KindTarget Kind = "target"
	// KindRule is a rule of an HTTP or HTTPS listener (WithRules); its Name
	// is Rule.Name, "" if unnamed.
	KindRule Kind = "rule"
)

// Object names one object of a configuration.
type Object struct {
	// Kind is what the object is; "" in a FieldError's Parent when the
	// object has none.
	Kind Kind
	// Name is its name (a target's id); "" if it has none.
	Name string
	// Index is its position among the objects of its kind in the
	// configuration (a target's among its group's, a rule's among its
	// listener's), from 0; -1 when the object is named by a call and not
	// found in a configuration (ErrNotFound).
	Index int
}

// String names the object as lb's messages do: `listener "web"`,
// `target[2] "10.0.0.1:80"`, `rule[1]`, `listener #2` for an unnamed one.
func (o Object) String() string {
	switch {
	case o.Kind == KindTarget || o.Kind == KindRule:
		s := string(o.Kind)
		if o.Index >= 0 {
			s += "[" + strconv.Itoa(o.Index) + "]"
		}
		if o.Name != "" {
			s += " " + strconv.Quote(o.Name)
		}
		return s
	case o.Name != "":
		return string(o.Kind) + " " + strconv.Quote(o.Name)
	default:
		return string(o.Kind) + " #" + strconv.Itoa(o.Index+1)
	}
}

// FieldError is one problem with a configuration, or a call that names
// what does not exist: the object it is about, the setting and the cause.
// Programs map it to their own names (package config maps it to the path
// of the field in its YAML file) instead of reading its message.
type FieldError struct {
	// Object is the object the problem is about.
	Object
	// Parent is the object that holds it: the target group of a target,
	// the listener of a rule; its Kind is "" for the others.
	Parent Object
	// Field is the setting, by the name of its option without "With"
	// ("ForwardTo", "Certificates", "Weight"), a field of the option's
	// struct after a dot ("Stickiness.CookieName", "HealthCheck.Port"),
	// or argument, and list positions in brackets ("Split[1].Group",
	// "Discovery.Interval"). "DefaultAction" is a listener's default action
	// as a whole (WithForwardTo, WithDefaultRedirect, WithDefaultFixed). A
	// target's fields are "Addr", "ID" and "Weight". Field is "" when the
	// problem is with the object as a whole (a rule, an object that does
	// not exist).
	Field string
	// Err is the cause. It wraps ErrInvalid for a configuration problem
	// and ErrNotFound for a call that names what does not exist, and, when
	// another package found the problem, that package's error. A failure
	// to set an object up that is no configuration problem (a socket the
	// system refuses to a health check) wraps the system's error only.
	Err error
}

// Error returns the object, then the cause: `listener "web": addr
// "127.0.0.1:99999": port "99999" is out of range 0..65535`.
func (e *FieldError) Error() string {
	s := e.Err.Error()
	if e.Kind == KindLoadBalancer || e.Kind == "" {
		return s
	}
	if e.Field == "HealthCheck" || strings.HasPrefix(e.Field, "HealthCheck.") {
		s = "health check: " + s
	}
	s = e.Object.String() + ": " + s
	if e.Parent.Kind != "" {
		s = e.Parent.String() + ": " + s
	}
	return s
}

// Unwrap returns the cause, for errors.Is (ErrInvalid, ErrNotFound, the
// other package's sentinel) and errors.As.
func (e *FieldError) Unwrap() error { return e.Err }

// cause is a FieldError's Err: a message in words, the sentinel it wraps
// (ErrInvalid or ErrNotFound) and, if another package found the problem,
// that package's error.
type cause struct {
	msg      string
	sentinel error
	err      error
}

func (c *cause) Error() string { return c.msg }

func (c *cause) Unwrap() []error {
	if c.err != nil {
		return []error{c.sentinel, c.err}
	}
	return []error{c.sentinel}
}

// invalidf returns a cause wrapping ErrInvalid.
func invalidf(format string, a ...any) error {
	return &cause{msg: fmt.Sprintf(format, a...), sentinel: ErrInvalid}
}

// invalidBy returns a cause wrapping ErrInvalid and err, another package's
// error, whose text is the message.
func invalidBy(err error) error {
	return &cause{msg: err.Error(), sentinel: ErrInvalid, err: err}
}

// notFound returns the error of a call that names obj (in parent) when it
// does not exist.
func notFound(obj, parent Object) error {
	obj.Index = -1
	if parent.Kind != "" {
		parent.Index = -1
	}
	return &FieldError{Object: obj, Parent: parent, Err: &cause{msg: ErrNotFound.Error(), sentinel: ErrNotFound}}
}
