package config

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/lbkit/lbkit/healthcheck"
)

// TestEjectionDefaults keeps the defaults of passive_ejection's fields,
// written here because config may not import healthcheck, equal to
// healthcheck's.
func TestEjectionDefaults(t *testing.T) {
	assert.Equal(t, healthcheck.DefaultEjectionFailures, defaultEjectFailures)
	assert.Equal(t, healthcheck.DefaultEjectionPeriod, defaultEjectPeriod)
	assert.Equal(t, healthcheck.DefaultMaxEjectedPercent, defaultEjectMaxPercent)
}
