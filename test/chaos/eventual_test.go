package chaos

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cairnkv/cairn/config"
	"github.com/cairnkv/cairn/test/cluster"
	"github.com/cairnkv/cairn/test/harness"
	"github.com/cairnkv/cairn/test/process"
)

var flagEventual = flag.Bool("chaos.eventual", false, "run the eventual convergence runs (also part of -chaos.long): in process and on 3 and 5 processes, and the proofs that the check catches a build without repair")

// antiEntropy is the nodes' anti-entropy interval in these runs: the
// replicas have three of them (and a margin) to converge once every node
// is back.
const antiEntropy = time.Second

func eventualConfig(name, prefix string, seed uint64, dir string) harness.EventualConfig {
	return harness.EventualConfig{
		Config: harness.Config{Name: name,
			Workload: harness.Workload{Clients: 6, Keys: 6, Rate: 120, Prefix: prefix, Seed: seed, Timeout: 4 * time.Second},
			Gap:      500 * time.Millisecond, Hold: 1500 * time.Millisecond},
		TTL:         time.Second,
		AntiEntropy: antiEntropy,
		Keyspaces:   append(slices.Clone(harness.DefaultEventualKeyspaces), harness.MaterializeKeyspace(materializedPrefix)),
		Materialize: &harness.MaterializeCheck{Prefix: materializedPrefix, Dir: func(slot int) string { return materializeDir(dir, slot) }},
	}
}

// materializedPrefix is the keyspace (replicas all) every node of an
// eventual run materializes into materializeDir: the run checks each
// member's directory against the converged end state.
const materializedPrefix = "evm/"

func materializeDir(dir string, slot int) string {
	return filepath.Join(dir, "materialized", fmt.Sprintf("slot%d", slot), "evm")
}

// inProcessEventual starts n in-process nodes, and a spare for the
// learner-promote fault, with a short anti-entropy interval; noRepair
// starts their eventual engines without anti-entropy, read repair, hints
// and handoff.
func inProcessEventual(t *testing.T, n int, noRepair bool, dir string) harness.Cluster {
	t.Helper()
	return cluster.New(t, n, cluster.Options{NoRepair: noRepair, Spares: 1, Configure: func(i int, c *config.Config) {
		c.AntiEntropyInterval = antiEntropy
		c.Materialize = config.MaterializeList{{Prefix: materializedPrefix, Dir: materializeDir(dir, i)}}
	}}).Harness()
}

// processEventual starts n processes of binary ("" for the faultinject
// build), and a spare, with a short anti-entropy interval.
func processEventual(t *testing.T, n int, dir, binary string) harness.Cluster {
	t.Helper()
	args := append(slices.Clone(process.DefaultArgs), "--anti-entropy-interval", antiEntropy.String())
	return process.New(t, &builds, process.Options{Binary: binary, Nodes: n, Spares: 1, Dir: dir, Args: args,
		NodeArgs: func(i int) []string {
			return []string{"--materialize", materializedPrefix + "=" + materializeDir(dir, i)}
		}})
}

// TestEventualShort is the eventual configuration inside `go test ./...`:
// one short run in process (a partition, a restart, a spare that joins and
// is removed, the leader isolated with latency and clocks skewed within the
// bound) and one on 3 processes (kill -9, SIGSTOP with a skewed clock, a
// split), each ending with a minority cut off while every node takes
// writes, healed once the clients stopped; then every replica of every key
// must converge within three anti-entropy intervals. Last, in process, a
// clock beyond the bound (CheckClockBeyondBound). TestEventual covers more.
func TestEventualShort(t *testing.T) {
	switch {
	case testing.Short():
		t.Skip("starts clusters")
	case *flagLong || *flagEventual || *flagDuration > 0:
		t.Skip("TestEventual covers more")
	}
	t.Run("in-process", func(t *testing.T) {
		dir := harness.RunDir(t, *flagKeep)
		cfg := eventualConfig("eventual short, in process, 3 nodes", "short/", 1, dir)
		cfg.Steps = [][]string{{harness.FaultPartitionMinority}, {harness.FaultRestart}, {harness.FaultLearner},
			{harness.FaultIsolateLeader, harness.FaultLatency, harness.FaultClockSkew}}
		harness.MustRunEventual(t, inProcessEventual(t, 3, false, dir), dir, cfg)
	})
	t.Run("processes", func(t *testing.T) {
		dir := harness.RunDir(t, *flagKeep)
		cfg := eventualConfig("eventual short, processes, 3 nodes", "short/", 2, dir)
		cfg.Steps = [][]string{{harness.FaultKill}, {harness.FaultClockSkew, harness.FaultPause}, {harness.FaultSplit}}
		harness.MustRunEventual(t, processEventual(t, 3, dir, ""), dir, cfg)
	})
	t.Run("clock-beyond-bound/in-process", testClockBeyondInProcess)
}

// testClockBeyondInProcess and testClockBeyondProcesses: one node's clock
// four max offsets ahead while the clients write; its writes that need
// another replica answer 503, and the run converges once the clock is
// right (harness.CheckClockBeyondBound).
func testClockBeyondInProcess(t *testing.T) {
	dir := harness.RunDir(t, *flagKeep)
	harness.CheckClockBeyondBound(t, inProcessEventual(t, 3, false, dir), dir, eventualConfig("clock beyond the bound, in process", "clock/", 4, dir))
}

func testClockBeyondProcesses(t *testing.T) {
	dir := harness.RunDir(t, *flagKeep)
	harness.CheckClockBeyondBound(t, processEventual(t, 3, dir, ""), dir, eventualConfig("clock beyond the bound, processes", "clock/", 5, dir))
}

// TestEventual is the eventual sweep (-chaos.eventual; TestChaos runs it
// with -chaos.long, as make chaos does): every fault kind of an eventual
// run (clock skew within the bound and a spare's join and removal
// included) once each in a seeded order, then one step of two at once, in
// process on 3 nodes and on 3 and 5 processes; a clock beyond the bound on
// processes; then the proofs that the convergence check fails on nodes
// without anti-entropy and read repair, in process
// (testhook.Hooks.NoRepair) and on processes (a cairn_broken_convergence
// build).
func TestEventual(t *testing.T) {
	switch {
	case testing.Short():
		t.Skip("starts clusters")
	case *flagLong:
		t.Skip("TestChaos runs it")
	case !*flagEventual:
		t.Skip("run with -chaos.eventual or -chaos.long (make chaos)")
	}
	testEventual(t)
}

func testEventual(t *testing.T) {
	// One pass rather than a duration, so that each run makes every kind
	// (a 20 s run made about five of them); shorter steps than the short
	// runs' keep a run at about 25 s.
	sweep := func(name string, seed uint64, open func(t *testing.T, dir string) harness.Cluster) {
		t.Run(name, func(t *testing.T) {
			dir := harness.RunDir(t, *flagKeep)
			cfg := eventualConfig("eventual sweep, "+name, "sweep/", seed, dir)
			cfg.Faults, cfg.Passes, cfg.Mixed = harness.EventualFaults, 1, 1
			cfg.Gap, cfg.Hold = 300*time.Millisecond, time.Second
			harness.MustRunEventual(t, open(t, dir), dir, cfg)
		})
	}
	sweep("in-process/3nodes", 1, func(t *testing.T, dir string) harness.Cluster { return inProcessEventual(t, 3, false, dir) })
	sweep("processes/3nodes", 2, func(t *testing.T, dir string) harness.Cluster { return processEventual(t, 3, dir, "") })
	sweep("processes/5nodes", 3, func(t *testing.T, dir string) harness.Cluster { return processEventual(t, 5, dir, "") })
	t.Run("clock-beyond-bound/processes", testClockBeyondProcesses)
	t.Run("checker-catches-no-repair/in-process", testCatchesNoRepairInProcess)
	t.Run("checker-catches-no-repair/processes", testCatchesNoRepairProcesses)
	t.Run("checker-catches-materialize-drift/processes", testCatchesMaterializeDrift)
}

// testCatchesMaterializeDrift: on nodes whose materializers ignore deletes
// (the cairn_broken_materialize build) a run with kill -9, a partition and
// deletes converges, and the materialize check must still fail.
func testCatchesMaterializeDrift(t *testing.T) {
	dir := harness.RunDir(t, *flagKeep)
	cfg := eventualConfig("materializers that ignore deletes, processes", "drift/", 8, dir)
	cfg.Steps = [][]string{{harness.FaultKill}, {harness.FaultPartitionMinority}}
	harness.CheckerCatchesMaterializeDrift(t, processEventual(t, 3, dir, brokenBuild(t, "cairn_broken_materialize")), dir, cfg)
}

// noRepairConfig is the run that must fail on nodes without repair: a
// partition and a restart, then a follower cut off while every node takes
// writes, healed only after the clients stopped.
func noRepairConfig(name, dir string, steps ...string) harness.EventualConfig {
	cfg := eventualConfig(name, "norepair/", 7, dir)
	for _, s := range steps {
		cfg.Steps = append(cfg.Steps, []string{s})
	}
	cfg.Final = []string{harness.FaultIsolateFollower}
	return cfg
}

func testCatchesNoRepairInProcess(t *testing.T) {
	dir := harness.RunDir(t, *flagKeep)
	harness.CheckerCatchesDivergence(t, inProcessEventual(t, 3, true, dir), dir,
		noRepairConfig("no repair, in process", dir, harness.FaultPartitionMinority, harness.FaultRestart))
}

func testCatchesNoRepairProcesses(t *testing.T) {
	dir := harness.RunDir(t, *flagKeep)
	bin := brokenBinary(t)
	harness.CheckerCatchesDivergence(t, processEventual(t, 3, dir, bin), dir,
		noRepairConfig("no repair, processes", dir, harness.FaultKill, harness.FaultPause))
}

// TestEventualCheckerCatches runs only the two proofs that the check fails
// on nodes without repair (-chaos.eventual.broken), to look at them alone.
func TestEventualCheckerCatches(t *testing.T) {
	if !*flagEventualBroken {
		t.Skip("run with -chaos.eventual.broken (TestEventual runs these too)")
	}
	t.Run("in-process", testCatchesNoRepairInProcess)
	t.Run("processes", testCatchesNoRepairProcesses)
	t.Run("materialize-drift", testCatchesMaterializeDrift)
}

var flagEventualBroken = flag.Bool("chaos.eventual.broken", false, "run only the proofs that the convergence check catches nodes without repair")

// broken holds the broken builds (by build tag), made on first use;
// TestMain removes their directory.
var broken struct {
	sync.Mutex
	dir   string
	paths map[string]string
}

// brokenBinary is cairn built with -tags faultinject,cairn_broken_convergence
// (its eventual engine runs without anti-entropy, read repair, hints and
// handoff), built once per test binary.
func brokenBinary(t *testing.T) string { return brokenBuild(t, "cairn_broken_convergence") }

// brokenBuild is cairn built with -tags faultinject,tag, once per test binary.
func brokenBuild(t *testing.T, tag string) string {
	t.Helper()
	broken.Lock()
	defer broken.Unlock()
	if p, ok := broken.paths[tag]; ok {
		return p
	}
	if broken.dir == "" {
		dir, err := os.MkdirTemp("", "cairn-test-broken")
		if err != nil {
			t.Fatal(err)
		}
		broken.dir, broken.paths = dir, map[string]string{}
	}
	path := filepath.Join(broken.dir, "cairn-"+tag)
	cmd := exec.Command("go", "build", "-tags", "faultinject,"+tag, "-o", path, "github.com/cairnkv/cairn/cmd/cairn")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build cairn with -tags %s: %v\n%s", tag, err, out)
	}
	broken.paths[tag] = path
	return path
}
