//go:build faultinject

package server_test

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/cairnkv/cairn/test/cluster"
)

// TestCheckerCatchesStaleReads proves the linearizability check can fail:
// with the read barrier switched off on followers (a bug on purpose, only in
// faultinject builds), partitioned followers serve stale values and the
// checker must say so.
func TestCheckerCatchesStaleReads(t *testing.T) {
	t.Setenv("CAIRN_DEBUG_UNSAFE_READS", "1")
	c := cluster.New(t, 3, cluster.Options{})
	res, path := checkUnderPartitions(t, c, 8*time.Second)
	if res != porcupine.Illegal {
		t.Fatalf("the checker accepted a history from a broken read path (%s)", res)
	}
	t.Logf("caught, as it must be; visualization: %s", path)
}
