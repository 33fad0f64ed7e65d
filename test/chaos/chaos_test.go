package chaos

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairnkv/cairn/test/harness"
	"github.com/cairnkv/cairn/test/model"
	"github.com/cairnkv/cairn/test/process"
)

var (
	flagLong     = flag.Bool("chaos.long", false, "run the long sweep (make chaos): every fault kind against 3 and 5 nodes, plus the stale-read, Docker and eventual tests")
	flagSeeds    = flag.Int("chaos.seeds", 1, "seeds per cluster size in the long sweep")
	flagDuration = flag.Duration("chaos.duration", 0, "run a custom sweep this long (split into rounds of -chaos.round), with the flags below")
	flagRound    = flag.Duration("chaos.round", time.Minute, "longest history checked at once in a custom sweep")
	flagSeed     = flag.Uint64("chaos.seed", 1, "seed of the custom sweep (the workload and the nemesis)")
	flagNodes    = flag.Int("chaos.nodes", 3, "cluster size of the custom sweep")
	flagClients  = flag.Int("chaos.clients", 6, "concurrent clients")
	flagKeys     = flag.Int("chaos.keys", 5, "keys the clients share")
	flagRate     = flag.Float64("chaos.rate", 150, "operations per second of all clients together (0: as fast as they go)")
	flagWatchers = flag.Int("chaos.watchers", 2, "watchers of each run's prefix, resuming on another node when a stream breaks (0: none)")
	flagFaults   = flag.String("chaos.faults", "all", "comma-separated fault kinds of the custom sweep, or all, or none")
	flagMixed    = flag.Bool("chaos.mixed", true, "in a custom sweep, inject two faults at once in every third step")
	flagKeep     = flag.Bool("chaos.keep", false, "keep node data and logs even when the run passes")
	flagRecheck  = flag.String("chaos.recheck", "", "check a saved history (history-*.json from a run directory) again, with no cluster")
)

// builds are the cairn binaries (with fault injection), built once for the
// package by the first test that needs them.
var builds process.Builds

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	builds.Remove()
	if broken.dir != "" {
		os.RemoveAll(broken.dir)
	}
	os.Exit(code)
}

// processes starts voters (and spares) real processes whose data and logs
// live in dir; they are killed when the test ends, however it ends.
func processes(t *testing.T, voters, spares int, dir string, env ...string) harness.Cluster {
	t.Helper()
	return process.New(t, &builds, process.Options{Nodes: voters, Spares: spares, Dir: dir, Env: env})
}

func workload(prefix string, seed uint64) harness.Workload {
	return harness.Workload{Clients: *flagClients, Keys: *flagKeys, Rate: *flagRate, Prefix: prefix, Seed: seed, Watchers: *flagWatchers}
}

// TestChaosShort is the configuration inside `go test ./...`: three short
// rounds of two steps each (about 20 s of faults in all) on one 3-node
// cluster of processes: kill -9 with the mirror bucket down, then the
// leader isolated with latency on every link; SIGSTOP, then a minority cut
// off; a leadership transfer, then a one-way drop with a follower
// isolated. Each round's keyspace is mirrored to a bucket in the test
// process, which must equal the keyspace at the end. The long sweep
// (TestChaos) covers every kind on 3 and 5 nodes.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	if *flagLong || *flagDuration > 0 {
		t.Skip("TestChaos covers more")
	}
	dir := harness.RunDir(t, *flagKeep)
	bucket := harness.NewMirrorBucket(t) // before the processes: it sets their credentials
	c := processes(t, 3, 0, dir)
	rounds := [][][]string{
		{{harness.FaultKill, harness.FaultBucketDown}, {harness.FaultIsolateLeader, harness.FaultLatency}},
		{{harness.FaultPause}, {harness.FaultPartitionMinority}},
		{{harness.FaultTransfer}, {harness.FaultOneWay, harness.FaultIsolateFollower}},
	}
	for r, steps := range rounds {
		var names []string
		for _, st := range steps {
			names = append(names, strings.Join(st, "+"))
		}
		prefix := fmt.Sprintf("chaos/short%d/", r+1)
		harness.MustRun(t, c, dir, harness.Config{Name: fmt.Sprintf("short round %d: %s", r+1, strings.Join(names, ", ")),
			Workload: workload(prefix, uint64(r+1)),
			Steps:    steps, Hold: 1500 * time.Millisecond,
			Mirror: &harness.MirrorCheck{Prefix: prefix, Bucket: bucket}})
	}
}

// TestChaos is the long sweep (-chaos.long, as make chaos runs it): every
// fault kind once, then mixed steps, against 3 and 5 nodes (-chaos.seeds
// seeds each); then the proof that the checker catches stale reads, the
// Docker variant, and the eventual sweep with its proofs (TestEventual).
// With -chaos.duration it is instead a custom sweep shaped by the flags.
func TestChaos(t *testing.T) {
	switch {
	case testing.Short():
		t.Skip("starts real processes")
	case *flagDuration > 0:
		customSweep(t)
	case *flagLong:
		harness.Sweep{
			Open: func(t *testing.T, voters, spares int, dir string) harness.Cluster {
				return processes(t, voters, spares, dir)
			},
			Sizes: []int{3, 5}, Seeds: *flagSeeds, Mixed: 3, Keep: *flagKeep, Mirror: true,
			Workload: workload("", 0),
		}.Run(t)
		t.Run("checker-catches-stale-reads", func(t *testing.T) {
			dir := harness.RunDir(t, *flagKeep)
			c := processes(t, 3, 0, dir, "CAIRN_DEBUG_UNSAFE_READS=1")
			harness.CheckerCatchesStaleReads(t, c, dir, workload("", 0))
		})
		t.Run("checker-catches-dropped-watch-events", func(t *testing.T) {
			dir := harness.RunDir(t, *flagKeep)
			c := process.New(t, &builds, process.Options{Nodes: 3, Dir: dir, Binary: brokenBuild(t, "cairn_broken_watch")})
			harness.CheckerCatchesDroppedWatchEvents(t, c, dir, workload("", 0))
		})
		t.Run("docker", testChaosDocker)
		t.Run("eventual", testEventual)
	default:
		t.Skip("run with -chaos.long (make chaos) or -chaos.duration D; see docs/TESTING.md")
	}
}

func customSweep(t *testing.T) {
	kinds := harness.AllFaults
	switch *flagFaults {
	case "all":
	case "none", "":
		kinds = nil
	default:
		kinds = strings.Split(*flagFaults, ",")
		for _, k := range kinds {
			if !harness.ValidFault(k) {
				t.Fatalf("unknown fault kind %q; the kinds are %s", k, strings.Join(harness.AllFaults, ","))
			}
		}
	}
	mixed := 0
	if *flagMixed {
		mixed = 1
	}
	dir := harness.RunDir(t, *flagKeep)
	c := processes(t, *flagNodes, 1, dir)
	deadline := time.Now().Add(*flagDuration)
	for r := 1; time.Until(deadline) > 5*time.Second; r++ {
		d := min(*flagRound, time.Until(deadline))
		seed := *flagSeed*1000 + uint64(r)
		res := harness.MustRun(t, c, dir, harness.Config{Name: fmt.Sprintf("sweep round %d, %d nodes, seed %d", r, *flagNodes, seed),
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
	h, err := model.Load(*flagRecheck)
	if err != nil {
		t.Fatal(err)
	}
	res := model.Check(h.Ops, h.Faults, 10*time.Minute, filepath.Dir(*flagRecheck))
	t.Logf("%s: %d keys, %d operations: %s in %s; bad keys %v; visualization %s",
		*flagRecheck, res.Keys, res.Ops, res.Verdict, res.Took, res.BadKeys, res.HTMLPath)
	if res.Verdict != model.Linearizable {
		t.Fail()
	}
}

// TestChaosLease runs lease reads (--read-mode lease) on real processes
// whose lease clocks all run 8% slow (inside the default 10% bound against
// Raft's own, unscaled timers): SIGSTOP (a leader frozen with its lease,
// then thawed after its successor took over), kill -9 with the leader
// isolated, and a leadership transfer with a minority cut off. Every
// history must be linearizable.
func TestChaosLease(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dir := harness.RunDir(t, *flagKeep)
	c := process.New(t, &builds, process.Options{Nodes: 3, Dir: dir,
		Args: append(slices.Clone(process.DefaultArgs), "--read-mode", "lease"),
		Env:  []string{"CAIRN_DEBUG_LEASE_CLOCK_RATE=0.92"}})
	rounds := [][][]string{
		{{harness.FaultPause}, {harness.FaultKill, harness.FaultIsolateLeader}},
		{{harness.FaultTransfer, harness.FaultPartitionMinority}, {harness.FaultIsolateLeader}},
	}
	for r, steps := range rounds {
		var names []string
		for _, st := range steps {
			names = append(names, strings.Join(st, "+"))
		}
		prefix := fmt.Sprintf("chaos/lease%d/", r+1)
		harness.MustRun(t, c, dir, harness.Config{Name: fmt.Sprintf("lease reads, lease clocks 8%% slow, round %d: %s", r+1, strings.Join(names, ", ")),
			Workload: workload(prefix, uint64(r+1)), Steps: steps, Hold: 1500 * time.Millisecond})
	}
	// The runs tested lease reads only if some were served under a lease.
	served := 0.0
	for i := 0; i < c.Slots(); i++ {
		resp, err := http.Get(c.Node(i).ClientURL + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "cairn_raft_lease_reads_total "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				served += f
			}
		}
	}
	if served == 0 {
		t.Fatal("no read was served under a lease (cairn_raft_lease_reads_total is 0 everywhere)")
	}
	t.Logf("%.0f reads served under a lease by the members' current processes", served)
}
