//go:build !cairn_broken_watch

package strong

// brokenWatchDrops: see broken_watch_on.go.
const brokenWatchDrops = false
