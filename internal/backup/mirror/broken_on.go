//go:build cairn_broken_mirror

package mirror

// brokenDropsFailedWrites makes the mirror give up a write the bucket
// refused once and carry on as if it had been copied, and the replicas that
// are not a key's first healthy owner drop their entries without looking
// at the bucket, so that writes made while the bucket is down never reach
// it: the build the chaos harness uses to prove its mirror check can fail.
// Never in a release.
const brokenDropsFailedWrites = true
