//go:build tools

// The commands tools/cluster builds; imported here so that go mod tidy keeps their dependencies.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
