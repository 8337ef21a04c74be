//go:build tools

// The command tools/cluster builds; imported here so that go mod tidy keeps its dependencies.
package tools

import (
	_ "sigs.k8s.io/prometheus-adapter/cmd/adapter"
)
