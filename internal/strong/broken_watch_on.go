//go:build cairn_broken_watch

package strong

// brokenWatchDrops makes live watch streams skip every command whose
// revision is a multiple of 25 (the history and its replays keep them): the
// build the chaos harness uses to prove its watch check can fail
// (harness.CheckerCatchesDroppedWatchEvents). Never in a release.
const brokenWatchDrops = true
