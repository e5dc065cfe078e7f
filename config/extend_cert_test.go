package config_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/lbkit/lbkit/config"
	"github.com/lbkit/lbkit/lb"
	"github.com/lbkit/lbkit/proxy"
)

// vault is a certificate source a test factory builds from YAML.
type vault struct{ listener, path string }

func (v *vault) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil }
func (v *vault) CertificateStatus() []lb.CertificateStatus                     { return nil }

const vaultFile = `
listeners:
  - name: web
    protocol: https
    address: 127.0.0.1:0
    forward_to: app
    certificates:
%s
target_groups:
  - name: app
    protocol: http
    targets: [{address: 127.0.0.1:1}]
%s`

func TestCertificateFactoryAndSection(t *testing.T) {
	var built []*vault
	certs := config.WithCertificateFactory("vault", func(listener string, node *yaml.Node) (lb.CertificateSource, error) {
		var c struct {
			Path string `yaml:"path"`
		}
		if err := node.Decode(&c); err != nil {
			return nil, err
		}
		if c.Path == "" {
			return nil, errors.New("path: required")
		}
		v := &vault{listener: listener, path: c.Path}
		built = append(built, v)
		return v, nil
	})
	var observed []proxy.Observer
	section := config.WithSection("tracing", func(node *yaml.Node) ([]lb.Option, error) {
		var c struct {
			Endpoint string `yaml:"otlp_endpoint"`
		}
		if err := node.Decode(&c); err != nil {
			return nil, err
		}
		if c.Endpoint == "" {
			return nil, errors.New("otlp_endpoint: required")
		}
		observed = append(observed, nil)
		return []lb.Option{lb.WithObserver(nil)}, nil
	})

	f, err := config.Parse([]byte(sprintf(vaultFile, "      - vault: {path: secret/web}", "tracing: {otlp_endpoint: 'c:4317'}")), certs, section)
	require.NoError(t, err)
	require.Equal(t, []string{"tracing"}, f.Sections())
	_, err = f.Options(nil)
	require.NoError(t, err)
	require.NotEmpty(t, built)
	require.Equal(t, "web", built[len(built)-1].listener)
	require.Equal(t, "secret/web", built[len(built)-1].path)
	require.NotEmpty(t, observed)

	// Problems: at their paths; unknown without the options.
	probs := parseProblems(t, sprintf(vaultFile, "      - vault: {}\n      - vault: {path: x}", "tracing: {}"), certs, section)
	joined := ""
	for _, p := range probs {
		joined += p.Error() + "\n"
	}
	require.Contains(t, joined, "path: required")
	require.Contains(t, joined, "listeners[web].certificates[1]: a listener has one certificate source")
	require.Contains(t, joined, "tracing")
	require.Contains(t, joined, "otlp_endpoint: required")

	probs = parseProblems(t, sprintf(vaultFile, "      - vault: {path: x}", "tracing: {}"))
	joined = ""
	for _, p := range probs {
		joined += p.Error() + "\n"
	}
	require.Contains(t, joined, "unknown field")
}

func sprintf(format string, a ...any) string { return fmt.Sprintf(format, a...) }
