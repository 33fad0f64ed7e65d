package server_test

import (
	"flag"
	"testing"
	"time"

	"github.com/cairnkv/cairn/test/harness"
)

var (
	nemesisSweep  = flag.Bool("nemesis", false, "run the in-process fault sweep: every fault kind against 3 and 5 nodes (make chaos)")
	nemesisSeeds  = flag.Int("nemesis.seeds", 1, "seeds per cluster size")
	nemesisPasses = flag.Int("nemesis.passes", 2, "passes over every fault kind per run")
)

// TestNemesisSweep is the harness's long sweep on in-process clusters: for
// 3 and 5 nodes, a fresh cluster and one run of every fault kind an
// in-process cluster can make, twice in seeded orders (so that each kind
// aims at the leader once and at a follower once), then three steps of two
// kinds at once; each history is checked for linearizability, monotonic
// serializable reads and lost writes, and every replica must converge. The
// kinds that need a process of their own (kill -9, SIGSTOP) are skipped
// with a note; test/chaos runs them, in the same harness, on processes.
func TestNemesisSweep(t *testing.T) {
	if !*nemesisSweep {
		t.Skip("run with -nemesis (make chaos)")
	}
	harness.Sweep{Open: inProcess, Sizes: []int{3, 5}, Seeds: *nemesisSeeds, Passes: *nemesisPasses, Mixed: 3,
		Gap: 500 * time.Millisecond, Hold: 900 * time.Millisecond, Workload: inProcessWorkload}.Run(t)
}
