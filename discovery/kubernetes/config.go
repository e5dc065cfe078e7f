package kubernetes

import (
	"errors"
	"fmt"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/lbkit/lbkit/lb"
)

// Config is a Source's settings as a daemon's configuration file writes
// them:
//
//	discovery:
//	  kubernetes: {namespace: shop, service: web, port: http, kubeconfig: /etc/lbd/kubeconfig}
type Config struct {
	// Namespace is the Service's namespace. Default: DefaultNamespace.
	Namespace string `yaml:"namespace"`
	// Service is the Service's name. Required.
	Service string `yaml:"service"`
	// Port is the Service port's name or number. Default: the only one.
	Port string `yaml:"port"`
	// Kubeconfig is a kubeconfig file. Default: the in-cluster
	// configuration.
	Kubeconfig string `yaml:"kubeconfig"`
}

// Source returns a Source with c's settings (see New).
func (c Config) Source() (*Source, error) {
	opts := []Option{WithPort(c.Port), WithKubeconfig(c.Kubeconfig)}
	if c.Namespace != "" {
		opts = append(opts, WithNamespace(c.Namespace))
	}
	return New(c.Service, opts...)
}

// FromConfig builds a Source from the YAML mapping of a Config, for
// config.WithSourceFactory("kubernetes", kubernetes.FromConfig). Unknown
// keys are refused with their line.
func FromConfig(node *yaml.Node) (lb.Source, error) {
	if node == nil || node.Kind != yaml.MappingNode {
		return nil, errors.New("want a mapping of namespace, service, port, kubeconfig")
	}
	known := []string{"namespace", "service", "port", "kubeconfig"}
	var errs []error
	for i := 0; i+1 < len(node.Content); i += 2 {
		k := node.Content[i]
		if !slices.Contains(known, k.Value) {
			errs = append(errs, fmt.Errorf("line %d: %s: unknown field (known: namespace, service, port, kubeconfig)", k.Line, k.Value))
		}
	}
	var c Config
	if err := node.Decode(&c); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	src, err := c.Source()
	if err != nil {
		return nil, err
	}
	return src, nil
}
