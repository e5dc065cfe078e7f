package config_test

import (
	"bytes"
	"os"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/lbkit/lbkit/config"
)

// BenchmarkParse measures reading the sample configuration with every
// check (impl=config: path-aware decoding, the package's checks and lb's
// validation) beside yaml's plain decoding of the same file into the same
// types, with unknown fields refused (impl=yaml).
func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile("../cmd/lbd/lbd.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("impl=config", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := config.Parse(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=yaml", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var f config.File
			dec := yaml.NewDecoder(bytes.NewReader(data))
			dec.KnownFields(true)
			if err := dec.Decode(&f); err != nil {
				b.Fatal(err)
			}
		}
	})
}
