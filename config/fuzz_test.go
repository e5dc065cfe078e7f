package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/lbkit/lbkit/config"
	"github.com/lbkit/lbkit/lb"
)

// FuzzParse feeds arbitrary bytes to Parse. It must never panic or hang,
// and what it accepts must be accepted all the way: Options builds it,
// lb.New takes it, and it survives a round trip through yaml.Marshal.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"",
		"listeners: []\n",
		"listeners: [{name: web, protocol: http, address: 127.0.0.1:0, forward_to: app}]\ntarget_groups: [{name: app, protocol: http, targets: [{address: 127.0.0.1:9001, weight: 0}]}]\n",
		"listeners: [{name: t, protocol: tcp, address: '[::1]:0', forward_to: e, allow: [::1/128], idle_timeout: 1m}]\ntarget_groups: [{name: e, protocol: tcp, algorithm: source_ip_hash, targets: [{address: '[::1]:9'}], deregistration_delay: 0s}]\n",
		"listeners: [{name: w, protocol: http, address: 127.0.0.1:0, fixed: {status: 204}, rules: [{path: /a/*, redirect: {scheme: https, code: 308}}, {host: '*.example.com', path: '~^/v[0-9]+', fixed: {body: x}}]}]\n",
		"target_groups: [{name: g, protocol: udp, health_check: {protocol: tcp, port: 53, interval: 2s, timeout: 1s}, discovery: {dns: localhost, port: 53, interval: 10s}}]\n",
		"target_groups: [{name: g, protocol: http, stickiness: {kind: source_ip, prefix_v4: 24}, passive_ejection: {failures: 3, period: 10s}}]\nflows: {max: 10, max_per_source: 2}\n",
		"x: &a [*a]\n",
		"a: &a {b: *a}\nlisteners: [*a]\n",
		"listeners:\n  - <<: {name: m, protocol: tcp}\n    address: 127.0.0.1:0\n",
		"flows: {max: 1, max: 2}\n",
		"listeners: [{name: s, protocol: https, address: 127.0.0.1:0, forward_to: a, certificates: [{cert_file: /dev/zero, key_file: /dev/null}]}]\n",
		"target_groups: [{name: a, protocol: tcp, health_check: {interval: 5}}]\n",
		"--- {}\n--- {}\n",
		"\t",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := config.Parse(data)
		if err != nil {
			require.ErrorIs(t, err, config.ErrInvalid)
			require.NotEmpty(t, err.Error())
			return
		}
		opts, err := file.Options(quiet)
		require.NoError(t, err, "Parse accepted what Options refuses")
		_, err = lb.New(append(opts, lb.WithLogger(quiet))...)
		require.NoError(t, err, "Parse accepted what lb refuses")
		out, err := yaml.Marshal(file)
		require.NoError(t, err)
		again, err := config.Parse(out)
		require.NoError(t, err, "the marshalled file is refused:\n%s", out)
		require.Equal(t, file, again)
	})
}
