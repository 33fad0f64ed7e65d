//go:build !cairn_broken_mirror

package mirror

import "time"

// brokenDropsFailedWrites is the cairn_broken_mirror build's bug, off: see
// broken_on.go.
const brokenDropsFailedWrites = false

// opTimeout bounds one try of a bucket operation (the S3 client retries
// inside it).
const opTimeout = time.Minute
