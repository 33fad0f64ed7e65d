package chaos

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

var (
	flagLong     = flag.Bool("chaos.long", false, "run the long sweep (make chaos): every fault kind against 3 and 5 nodes, plus the stale-read, crash and Docker tests")
	flagSeeds    = flag.Int("chaos.seeds", 1, "seeds per cluster size in the long sweep")
	flagDuration = flag.Duration("chaos.duration", 0, "run a custom sweep this long (split into rounds of -chaos.round), with the flags below")
	flagRound    = flag.Duration("chaos.round", time.Minute, "longest history checked at once in a custom sweep")
	flagSeed     = flag.Uint64("chaos.seed", 1, "seed of the custom sweep (the workload and the nemesis)")
	flagNodes    = flag.Int("chaos.nodes", 3, "cluster size of the custom sweep")
	flagClients  = flag.Int("chaos.clients", 6, "concurrent clients")
	flagKeys     = flag.Int("chaos.keys", 5, "keys the clients share")
	flagRate     = flag.Float64("chaos.rate", 150, "operations per second of all clients together (0: as fast as they go)")
	flagFaults   = flag.String("chaos.faults", "all", "comma-separated fault kinds of the custom sweep, or all, or none")
	flagMixed    = flag.Bool("chaos.mixed", true, "in a custom sweep, inject two faults at once in a third of the steps")
	flagKeep     = flag.Bool("chaos.keep", false, "keep node data and logs even when the run passes")
	flagRecheck  = flag.String("chaos.recheck", "", "check a saved history (history-*.json from a run directory) again, with no cluster")
)

// The cairn binary with fault injection, built once for the package by the
// first test that needs it, into a directory TestMain removes.
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// mustBinary builds cairn with -tags faultinject (CGO_ENABLED=0, so the
// Docker variant can run it in a FROM scratch image) and returns its path.
func mustBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "cairn-chaos-bin"); binErr == nil {
			binPath, binErr = BuildBinary(binDir)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// runDir is where a test's nodes keep their data and logs, and where a
// failing check leaves its visualization. It survives a failing test.
func runDir(t *testing.T) string {
	t.Helper()
	name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	dir, err := os.MkdirTemp("", "cairn-chaos-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || *flagKeep {
			t.Logf("node data, logs and reports kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// mustCluster starts n voters (and spares) whose processes are killed when
// the test ends, however it ends.
func mustCluster(t *testing.T, dir string, n, spares int, env ...string) *Cluster {
	t.Helper()
	c, err := NewCluster(Options{Binary: mustBinary(t), Nodes: n, Spares: spares, Dir: dir, Env: env, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// mustRun runs cfg, prints the report and fails the test on a failed check.
func mustRun(t *testing.T, c *Cluster, dir string, cfg Config) *Result {
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

func workload(prefix string, seed uint64) Workload {
	return Workload{Clients: *flagClients, Keys: *flagKeys, Rate: *flagRate, Prefix: prefix, Seed: seed}
}

// TestChaosShort is the configuration inside `go test ./...`: three short
// rounds (about 20 s of faults in all) on one 3-node cluster, two fault kinds
// each, among them kill -9 and SIGSTOP. The long sweep (TestChaos) covers
// every kind on 3 and 5 nodes.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	if *flagLong || *flagDuration > 0 {
		t.Skip("TestChaos covers more")
	}
	dir := runDir(t)
	c := mustCluster(t, dir, 3, 0)
	rounds := [][]string{
		{FaultKill, FaultIsolateLeader},
		{FaultPause, FaultPartitionMinority},
		{FaultOneWay, FaultTransfer},
	}
	for r, kinds := range rounds {
		mustRun(t, c, dir, Config{Name: fmt.Sprintf("short round %d: %s", r+1, strings.Join(kinds, "+")),
			Workload: workload(fmt.Sprintf("chaos/short%d/", r+1), uint64(r+1)),
			Faults:   kinds, Hold: 1500 * time.Millisecond})
	}
}

// TestChaos is the long sweep (-chaos.long, as make chaos runs it): every
// fault kind once, then mixed steps, against 3 and 5 nodes (-chaos.seeds
// seeds each); then the proof that the checker catches stale reads, crash
// durability, and the Docker variant. With -chaos.duration it is instead a
// custom sweep shaped by the flags.
func TestChaos(t *testing.T) {
	switch {
	case testing.Short():
		t.Skip("starts real processes")
	case *flagDuration > 0:
		customSweep(t)
	case *flagLong:
		for s := 1; s <= *flagSeeds; s++ {
			for _, n := range []int{3, 5} {
				seed := uint64(2*s - 1)
				if n == 5 {
					seed++
				}
				t.Run(fmt.Sprintf("%dnodes/seed%d", n, seed), func(t *testing.T) {
					dir := runDir(t)
					c := mustCluster(t, dir, n, 1)
					mustRun(t, c, dir, Config{Name: fmt.Sprintf("every fault, %d nodes, seed %d", n, seed),
						Workload: workload(fmt.Sprintf("chaos/s%d/", seed), seed),
						Faults:   AllFaults, Mixed: 3})
				})
			}
		}
		t.Run("checker-catches-stale-reads", testCheckerCatchesStaleReads)
		t.Run("crash-durability", testCrashDurability)
		t.Run("docker", testChaosDocker)
	default:
		t.Skip("run with -chaos.long (make chaos) or -chaos.duration D; see docs/TESTING.md")
	}
}

func customSweep(t *testing.T) {
	kinds := AllFaults
	switch *flagFaults {
	case "all":
	case "none", "":
		kinds = nil
	default:
		kinds = strings.Split(*flagFaults, ",")
		for _, k := range kinds {
			if !ValidFault(k) {
				t.Fatalf("unknown fault kind %q; the kinds are %s", k, strings.Join(AllFaults, ","))
			}
		}
	}
	mixed := 0
	if *flagMixed {
		mixed = 1
	}
	dir := runDir(t)
	c := mustCluster(t, dir, *flagNodes, 1)
	deadline := time.Now().Add(*flagDuration)
	for r := 1; time.Until(deadline) > 5*time.Second; r++ {
		d := min(*flagRound, time.Until(deadline))
		seed := *flagSeed*1000 + uint64(r)
		res := mustRun(t, c, dir, Config{Name: fmt.Sprintf("sweep round %d, %d nodes, seed %d", r, *flagNodes, seed),
			Workload: workload(fmt.Sprintf("chaos/sweep%d/", r), seed),
			Faults:   kinds, Duration: d, Mixed: mixed})
		if !res.OK() {
			return
		}
	}
}

// TestChaosRecheck checks a saved history again (-chaos.recheck FILE), to
// look at a failure or a slow check without running a cluster.
func TestChaosRecheck(t *testing.T) {
	if *flagRecheck == "" {
		t.Skip("run with -chaos.recheck history-….json")
	}
	ops, faults, err := LoadHistory(*flagRecheck)
	if err != nil {
		t.Fatal(err)
	}
	res := CheckLinearizable(ops, faults, 10*time.Minute, filepath.Dir(*flagRecheck))
	t.Logf("%s: %d keys, %d operations: %s in %s; bad keys %v; visualization %s",
		*flagRecheck, res.Keys, res.Ops, res.Result, res.Took, res.BadKeys, res.HTMLPath)
	if res.Result != porcupine.Ok {
		t.Fail()
	}
}
