//go:build faultinject

package server_test

import (
	"testing"

	"github.com/cairnkv/cairn/test/harness"
)

// TestCheckerCatchesStaleReads proves, in process, that the checker can
// fail: with the read barrier switched off on followers (a bug on purpose,
// only in faultinject builds), a cut-off follower serves stale values, and
// both the model's check and a whole harness run must say so. test/chaos
// proves the same on real processes.
func TestCheckerCatchesStaleReads(t *testing.T) {
	t.Setenv("CAIRN_DEBUG_UNSAFE_READS", "1")
	dir := harness.RunDir(t, false)
	harness.CheckerCatchesStaleReads(t, inProcess(t, 3, 0, dir), dir, inProcessWorkload)
}
