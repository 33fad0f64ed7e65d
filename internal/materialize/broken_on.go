//go:build cairn_broken_materialize

package materialize

// brokenIgnoresDeletes makes the materializer drop the delete events of its
// feed, so deleted keys stay on disk: the build the chaos harness uses to
// prove its materialize check can fail (harness.CheckerCatchesMaterializeDrift).
// Never in a release.
const brokenIgnoresDeletes = true
