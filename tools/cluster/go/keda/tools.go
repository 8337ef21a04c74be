//go:build tools

// The commands tools/cluster builds; imported here so that go mod tidy keeps their dependencies.
package tools

import (
	_ "github.com/kedacore/keda/v2/cmd/adapter"
	_ "github.com/kedacore/keda/v2/cmd/operator"
)
