package proxy

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStatusClassesJSON(t *testing.T) {
	s := StatusClasses{1, 50, 0, 3, 7}
	b, err := json.Marshal(s)
	require.NoError(t, err)
	assert.JSONEq(t, `{"1xx":1,"2xx":50,"3xx":0,"4xx":3,"5xx":7}`, string(b))
	var back StatusClasses
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, s, back)
	require.NoError(t, json.Unmarshal([]byte(`{"5xx":2}`), &back))
	assert.Equal(t, StatusClasses{4: 2}, back, "classes left out are 0")
	assert.Error(t, json.Unmarshal([]byte(`{"6xx":1}`), &back))
	assert.Error(t, json.Unmarshal([]byte(`[1,2]`), &back))
}
