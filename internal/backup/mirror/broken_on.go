//go:build cairn_broken_mirror

package mirror

import "time"

// brokenDropsFailedWrites makes the mirror give up a write the bucket
// refused once and carry on as if it had been copied, and the replicas that
// are not a key's first healthy owner drop their entries without looking
// at the bucket, so that writes made while the bucket is down never reach
// it: the build the chaos harness uses to prove its mirror check can fail.
// Never in a release.
const brokenDropsFailedWrites = true

// opTimeout is short in the broken build, so that a write the bucket
// refuses is given up at once: the S3 client retries a 503 about ten times
// over several seconds inside one try, and with a minute per try the last
// writes of a run were still waiting their turn when the outage ended and
// were copied after all (CI: the proof passed the broken build once).
const opTimeout = 300 * time.Millisecond
