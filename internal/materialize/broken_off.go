//go:build !cairn_broken_materialize

package materialize

// brokenIgnoresDeletes is the cairn_broken_materialize build's bug, off:
// see broken_on.go.
const brokenIgnoresDeletes = false
