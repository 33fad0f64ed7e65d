//go:build !cairn_broken_mirror

package mirror

// brokenDropsFailedWrites is the cairn_broken_mirror build's bug, off: see
// broken_on.go.
const brokenDropsFailedWrites = false
