package server_test

import (
	"testing"
	"time"

	"github.com/cairnkv/cairn/config"
	"github.com/cairnkv/cairn/test/cluster"
	"github.com/cairnkv/cairn/test/harness"
)

// inProcess starts an in-process cluster for the fault-injection harness
// (test/harness): voters that snapshot every 256 entries and keep 64 behind,
// so that a node kept away catches up by installing a snapshot, spare
// slots, and node logs kept in memory (the snapshot fault looks for the
// install in them). The process sweep (test/chaos) runs the same harness on
// real processes.
func inProcess(t *testing.T, voters, spares int, _ string) harness.Cluster {
	c := cluster.New(t, voters, cluster.Options{Spares: spares, KeepLog: true, Configure: func(_ int, cfg *config.Config) {
		cfg.SnapshotEntries, cfg.TrailingLogs, cfg.SnapshotInterval = 256, 64, 200*time.Millisecond
	}})
	return c.Harness()
}

// inProcessWorkload is the clients of the in-process runs: the harness's
// HTTP and RESP workload, as fast as the clients go (the process runs hold
// theirs at 150 operations per second), and two watchers of the run's
// prefix.
var inProcessWorkload = harness.Workload{Clients: 6, Keys: 5, Rate: 0, Watchers: 2}

// TestLinearizableUnderPartitions drives the harness's clients through
// every node (writes forwarded by followers, reads through the read index)
// while the leader or a follower is repeatedly cut off, and checks the
// history (linearizability, serializable reads, lost writes, converged
// replicas).
func TestLinearizableUnderPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("fault-injection run")
	}
	dir := harness.RunDir(t, false)
	c := inProcess(t, 3, 0, dir)
	w := inProcessWorkload
	w.Prefix, w.Seed = "lin/", 1
	harness.MustRun(t, c, dir, harness.Config{Name: "partitions, in process", Workload: w,
		Faults:   []string{harness.FaultIsolateLeader, harness.FaultIsolateFollower},
		Duration: 8 * time.Second, Gap: 700 * time.Millisecond, Hold: 900 * time.Millisecond})
}
