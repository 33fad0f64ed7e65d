package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// RunDir is where a test's nodes keep their data and logs, and where a run
// leaves its history, report and visualization. It survives a failing test
// (and any test when keep is set), and says where it is.
func RunDir(t *testing.T, keep bool) string {
	t.Helper()
	name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	dir, err := os.MkdirTemp("", "cairn-chaos-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || keep {
			t.Logf("node data, logs and reports kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// MustRun runs cfg on c with dir as its output directory, logs the report
// (and writes it to dir), and fails the test on a failed check.
func MustRun(t *testing.T, c Cluster, dir string, cfg Config) *Result {
	t.Helper()
	cfg.OutDir, cfg.Logf = dir, t.Logf
	res := Run(c, cfg)
	t.Log("\n" + res.Report)
	_ = os.WriteFile(filepath.Join(dir, "report-"+strings.NewReplacer("/", "_", " ", "_").Replace(cfg.Name)+".txt"), []byte(res.Report), 0o644)
	if !res.OK() {
		t.Errorf("chaos run %q failed: %s", cfg.Name, strings.Join(res.Failures, "; "))
		if res.Visualization != "" {
			t.Logf("porcupine visualization: %s", res.Visualization)
		}
	}
	return res
}

// Opener starts a cluster of voters bootstrap voters and spares spare
// slots, with node data and logs under dir, stopped when the test ends.
type Opener func(t *testing.T, voters, spares int, dir string) Cluster

// Sweep is the long sweep, the same on every implementation: for each seed
// and cluster size, a fresh cluster with one spare slot and one Run of
// every fault kind it can make (Passes passes, each in a seeded order, then
// Mixed steps of two kinds at once). Subtests are named like
// "3nodes/seed1"; seeds count up across sizes (3nodes/seed1, 5nodes/seed2,
// 3nodes/seed3, …).
type Sweep struct {
	Open   Opener
	Sizes  []int
	Seeds  int
	Faults []string // default AllFaults
	Passes int
	Mixed  int
	// Workload shapes the clients (Clients, Keys, Rate, Timeout); each run
	// sets its own Prefix and Seed.
	Workload     Workload
	Gap, Hold    time.Duration
	CheckTimeout time.Duration
	// Keep keeps the run directories of passing runs too.
	Keep bool
	// Mirror mirrors each run's keyspace to a bucket in the test process
	// (made before the cluster, see NewMirrorBucket), adds the bucket
	// outage to the fault kinds, and checks the bucket at the end.
	Mirror bool
}

// Run runs the sweep as subtests of t.
func (s Sweep) Run(t *testing.T) {
	faults := s.Faults
	if faults == nil {
		faults = AllFaults
	}
	seed := uint64(0)
	for k := 0; k < max(s.Seeds, 1); k++ {
		for _, n := range s.Sizes {
			seed++
			t.Run(fmt.Sprintf("%dnodes/seed%d", n, seed), func(t *testing.T) {
				dir := RunDir(t, s.Keep)
				w := s.Workload
				w.Prefix, w.Seed = fmt.Sprintf("chaos/s%d/", seed), seed
				kinds, name := faults, fmt.Sprintf("every fault, %d nodes, seed %d", n, seed)
				var mirror *MirrorCheck
				if s.Mirror {
					mirror = &MirrorCheck{Prefix: w.Prefix, Bucket: NewMirrorBucket(t)}
					kinds = append(slices.Clone(faults), FaultBucketDown)
					name += ", mirrored"
				}
				c := s.Open(t, n, 1, dir)
				MustRun(t, c, dir, Config{Name: name, Workload: w, Mirror: mirror,
					Faults: kinds, Passes: s.Passes, Mixed: s.Mixed, Gap: s.Gap, Hold: s.Hold, CheckTimeout: s.CheckTimeout})
			})
		}
	}
}
