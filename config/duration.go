package config

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a length of time, written in a configuration file as Go
// writes durations: "350s", "5m", "1h30m", "250ms". A bare number is an
// error (is 5 seconds or minutes?), except 0.
type Duration time.Duration

// String returns the duration as Go writes it, e.g. "5m0s".
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("is a %s, want a duration such as \"5s\"", kindName(n))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("%q is not a duration (write it as \"300ms\", \"5s\", \"2m30s\")", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string, e.g. "5m0s".
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }
