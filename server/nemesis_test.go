package server_test

import (
	"flag"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/cairnkv/cairn/config"
	"github.com/cairnkv/cairn/test/cluster"
)

var (
	nemesisSweep = flag.Bool("nemesis", false, "run the fault sweep: every fault kind against 3 and 5 nodes (make chaos)")
	nemesisTime  = flag.Duration("nemesis.duration", 6*time.Second, "how long each sweep run injects faults")
	nemesisSeeds = flag.Int("nemesis.seeds", 1, "seeds per fault kind and cluster size")
)

// TestNemesisSweep runs every fault kind on its own, then all of them mixed,
// against 3- and 5-node clusters, and checks each history for
// linearizability, per-client monotonic serializable reads and convergence of
// every replica. Nodes snapshot often and keep a short log, so a node kept
// away (partitioned, restarted or re-added) catches up by installing a snapshot.
func TestNemesisSweep(t *testing.T) {
	if !*nemesisSweep {
		t.Skip("run with -nemesis (make chaos)")
	}
	kinds := make([]string, 0, len(faults))
	for k := range faults {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	runs := [][]string{}
	for _, k := range kinds {
		runs = append(runs, []string{k})
	}
	runs = append(runs, kinds) // mixed
	for _, n := range []int{3, 5} {
		for _, ks := range runs {
			for seed := 1; seed <= *nemesisSeeds; seed++ {
				name := fmt.Sprintf("%dnodes/%s/seed%d", n, ks[0], seed)
				if len(ks) > 1 {
					name = fmt.Sprintf("%dnodes/mixed/seed%d", n, seed)
				}
				t.Run(name, func(t *testing.T) {
					c := cluster.New(t, n, cluster.Options{Configure: func(_ int, cfg *config.Config) {
						cfg.SnapshotEntries, cfg.TrailingLogs, cfg.SnapshotInterval = 256, 64, 200*time.Millisecond
					}})
					res, path := checkUnderFaults(t, c, ks, *nemesisTime, uint64(seed))
					if res != porcupine.Ok {
						t.Fatalf("history is %s; visualization: %s", res, path)
					}
				})
			}
		}
	}
}
