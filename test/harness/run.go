package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cairnkv/cairn/test/model"
)

// Config is one run: a workload against a running cluster while the
// nemesis injects faults, then the checks.
type Config struct {
	// Name labels the run in the report.
	Name string
	Workload
	// Faults are the kinds the nemesis injects (see AllFaults); the kinds
	// the cluster cannot make are skipped with a note. None: the workload
	// runs without faults for Duration.
	Faults []string
	// Steps, when set, are the nemesis's steps in order, each a set of
	// kinds injected together (Faults, Duration, Passes and Mixed are then
	// ignored).
	Steps [][]string
	// Duration is how long the nemesis works; 0 means Passes passes (each
	// kind of Faults once per pass, in a seeded order), then Mixed steps.
	Duration time.Duration
	// Passes is the number of passes of a run without a Duration (default 1).
	Passes int
	// Mixed is, in a run without a Duration, the number of steps that
	// inject two composable faults at once after the passes; in a run with
	// a Duration, any value above 0 makes every third step mixed.
	Mixed int
	// Gap is the shortest wait between two steps (default 800 ms); the
	// nemesis waits between Gap and 2.5 times as long.
	Gap time.Duration
	// Hold is the shortest time a fault lasts; the nemesis holds each step
	// between Hold and twice as long (default 2 s).
	Hold time.Duration
	// CheckTimeout bounds porcupine (default 2 minutes).
	CheckTimeout time.Duration
	// Mirror, when set, mirrors one keyspace of the run to a bucket in the
	// test process, which the bucket-down fault takes down, and checks the
	// bucket against the keyspace once the replicas agree (see
	// eventual_mirror.go). Run creates Mirror.Prefix as a strong keyspace
	// mirrored to the bucket; an eventual run names it among its Keyspaces.
	Mirror *MirrorCheck
	// OutDir receives the history and, when the check fails, the HTML
	// visualization (default: the system's temporary directory).
	OutDir string
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// Result is what a run found.
type Result struct {
	Config        Config
	Cluster       string // the implementation (Cluster.Describe)
	Took          time.Duration
	Ops           []*model.Op
	Faults        []FaultRecord
	Linearizable  model.Linearizability
	SerialReads   int
	Acked         int    // acknowledged writes
	State         *State // the converged replicas
	Failures      []string
	Notes         []string
	Visualization string
	HistoryPath   string // the history as JSON, for -chaos.recheck
	WatchPath     string // the watchers' streams and the reference feed as JSON, when the watch check failed
	Report        string

	// Watch is what the watch check found (nil: the run had no watchers).
	Watch *model.WatchResult

	// MirrorFailures are how the mirror bucket differed from the keyspace
	// read linearizably at the end, MirroredAfter how long the check took.
	MirrorFailures []string
	MirroredAfter  time.Duration
}

// OK reports whether every check passed.
func (r *Result) OK() bool { return len(r.Failures) == 0 }

func (r *Result) fail(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

// runFileName is the name of a run's file in its OutDir: kind, the run's
// name with path separators, spaces, colons and commas taken out, ext.
func runFileName(kind, run, ext string) string {
	return kind + strings.NewReplacer("/", "_", " ", "_", ":", "", ",", "").Replace(run) + ext
}

// saveHistory writes the history to OutDir, so that a failed or slow check
// can be run again on its own.
func saveHistory(cfg Config, ops []*model.Op, faults []model.Annotation) string {
	name := runFileName("history-", cfg.Name, ".json")
	path := filepath.Join(cfg.OutDir, name)
	if (&model.History{Name: cfg.Name, Ops: ops, Faults: faults}).Save(path) != nil {
		return ""
	}
	return path
}

// saveWatches writes what the watch check looked at to OutDir.
func saveWatches(cfg Config, w *model.WatchCheck) string {
	name := runFileName("watches-", cfg.Name, ".json")
	path := filepath.Join(cfg.OutDir, name)
	b, err := json.MarshalIndent(struct {
		Prefix        string
		From, Target  int64
		Streams       []model.WatchStream
		Reference     []model.WatchEvent
		ReferenceFrom int64
		ReferenceErr  string `json:",omitempty"`
	}{w.Prefix, w.From, w.Target, w.Streams, w.Reference, w.ReferenceFrom, w.ReferenceErr}, "", " ")
	if err != nil || os.WriteFile(path, b, 0o644) != nil {
		return ""
	}
	return path
}

// Run drives cfg against c, heals every fault, waits for the replicas to
// agree and checks the history. It returns when every client and fault has
// stopped; the cluster stays up (running, healed) for the next run.
func Run(c Cluster, cfg Config) *Result {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = 2 * time.Minute
	}
	if cfg.Hold <= 0 {
		cfg.Hold = 2 * time.Second
	}
	if cfg.Gap <= 0 {
		cfg.Gap = 800 * time.Millisecond
	}
	if cfg.OutDir == "" {
		cfg.OutDir = os.TempDir()
	}
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("%d nodes, seed %d", c.Size(), cfg.Seed)
	}
	res := &Result{Config: cfg, Cluster: c.Describe()}
	p, notes := schedule(c, cfg)
	res.Notes = append(res.Notes, notes...)
	if cfg.Mirror != nil {
		if err := createStrongMirror(c, cfg.Mirror); err != nil {
			res.fail("%v", err)
			res.Report = res.format()
			return res
		}
	}
	// The revision the run starts from: every change the run makes moves it
	// by exactly one, which lets the check account for unknown writes.
	startRev := int64(-1)
	if st, err := c.WaitConverged(10 * time.Second); err == nil {
		startRev = st.Revision
	} else {
		res.Notes = append(res.Notes, fmt.Sprintf("no agreed revision at the start (%v): unknown writes stay open to the end", err))
	}
	rec := &recorder{start: time.Now()}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	watchFrom := int64(0) // from now, when the run's first revision is not known
	if startRev >= 0 {
		watchFrom = startRev + 1
	}
	var ws *watchers
	if cfg.Watchers > 0 {
		ws = startWatchers(c, cfg.Watchers, cfg.Prefix, watchFrom, cfg.Seed, rec)
	}
	waitClients := runClients(ctx, c, cfg.Workload, rec)

	nm := newNemesis(c, cfg, rec)
	sleep(ctx, time.Second)
	nm.drive(ctx, p, cfg)
	if err := nm.restore(); err != nil {
		res.fail("restoring the cluster after the faults: %v", err)
	}
	// Let the clients see the healed cluster before they stop.
	sleep(ctx, 2*time.Second)
	stop()
	waitClients()
	res.Faults = nm.faults
	cfg.Logf("harness: %s: workload stopped after %s; waiting for the replicas", cfg.Name, time.Since(rec.start).Round(time.Second))

	for i := 0; i < c.Slots(); i++ {
		if c.Node(i).Member {
			if err := c.WaitReady(i, 30*time.Second); err != nil {
				res.fail("after healing: %v", err)
			}
		}
	}
	checkMembers(c, res)
	st, err := c.WaitConverged(30 * time.Second)
	if err != nil {
		res.fail("%v", err)
	}
	res.State = st
	var watchCheck *model.WatchCheck
	if ws != nil {
		watchCheck = &model.WatchCheck{Prefix: cfg.Prefix, From: watchFrom}
		if st != nil {
			watchCheck.Target, watchCheck.End = st.Revision, st.Items
			watchCheck.Streams = ws.catchUp(st.Revision, watchCatchUp)
			switch ref, refFrom, err := referenceFeed(c, cfg.Prefix, watchFrom, st.Revision); {
			case watchFrom == 0:
				watchCheck.ReferenceErr = "the run's first revision is not known"
			case err != nil:
				watchCheck.ReferenceErr = err.Error()
			default:
				watchCheck.Reference, watchCheck.ReferenceFrom = ref, refFrom
			}
		} else {
			watchCheck.Streams = ws.catchUp(0, 0)
			watchCheck.ReferenceErr = "the replicas did not agree"
		}
	}
	if cfg.Mirror != nil && st != nil {
		if want, err := linearizableValues(c, cfg.Mirror.Prefix); err != nil {
			res.fail("mirror check: %v", err)
		} else {
			res.MirrorFailures, res.MirroredAfter = checkMirror(cfg.Mirror, want, rec.start)
			for _, f := range res.MirrorFailures {
				res.fail("%s", f)
			}
		}
	}
	keys := make([]string, cfg.Keys)
	for i := range keys {
		keys[i] = cfg.Key(i)
	}
	finalReads(c, cfg, rec, keys)
	if st != nil {
		// The agreed state is one more read of every key, after everything.
		at := rec.now()
		for _, k := range keys {
			op := &model.Op{Client: cfg.Clients, Node: "replicas", Kind: model.KindGet, Key: k, Call: at, Return: at + 1}
			if it, ok := st.Items[k]; ok {
				op.Found, op.Got, op.Rev, op.Ver = true, string(it.Value), it.ModRevision, it.Version
			}
			rec.add(op)
		}
	}
	end := rec.now() + 2
	for _, o := range rec.ops {
		if o.Outcome == model.Unknown {
			o.Return = end
		}
	}
	res.Ops = rec.ops
	res.Took = time.Since(rec.start)

	var anns []model.Annotation
	for _, f := range res.Faults {
		e := f.End
		if e == 0 {
			e = f.Start
		}
		anns = append(anns, model.Annotation{Start: int64(f.Start), End: int64(e), Description: f.Kind, Details: f.Detail + " " + f.Err})
	}
	if st != nil && startRev >= 0 {
		res.Notes = append(res.Notes, model.AccountUnknowns(res.Ops, st.Revision-startRev, nm.fillAcked.Load(), nm.fillUnknown.Load()))
	}
	res.HistoryPath = saveHistory(cfg, res.Ops, anns)
	res.Linearizable = model.Check(res.Ops, anns, cfg.CheckTimeout, cfg.OutDir)
	switch res.Linearizable.Verdict {
	case model.NotLinearizable:
		res.fail("history is not linearizable (keys %s); visualization: %s", strings.Join(res.Linearizable.BadKeys, " "), res.Linearizable.HTMLPath)
		res.Visualization = res.Linearizable.HTMLPath
	case model.TimedOut:
		res.fail("linearizability check did not finish within %s (fewer keys or a lower rate make histories easier)", cfg.CheckTimeout)
	}
	var viol, staleBack []string
	res.SerialReads, viol, staleBack = model.CheckSerializable(res.Ops)
	for _, v := range viol {
		res.fail("serializable read %s", v)
	}
	for _, v := range staleBack {
		res.Notes = append(res.Notes, "serializable read "+v)
	}
	for _, v := range model.CheckClientRevisions(res.Ops) {
		res.fail("%s", v)
	}
	if st != nil {
		var lost []string
		res.Acked, lost = model.CheckLostWrites(res.Ops, keys, st.Items)
		for _, v := range lost {
			res.fail("lost write: %s", v)
		}
	} else {
		res.Acked, _ = model.CheckLostWrites(res.Ops, nil, nil)
	}
	if watchCheck != nil {
		watchCheck.Ops = res.Ops
		wr := model.CheckWatches(*watchCheck)
		res.Watch = &wr
		res.Notes = append(res.Notes, wr.Notes...)
		for _, f := range wr.Failures {
			res.fail("%s", f)
		}
		if len(wr.Failures) > 0 {
			res.WatchPath = saveWatches(cfg, watchCheck)
		}
	}
	notes, crashes := c.Drain()
	res.Notes = append(res.Notes, notes...)
	for _, e := range crashes {
		res.fail("node crashed: %s", e)
	}
	for _, a := range rec.anomalies {
		res.fail("API contract: %s", a)
	}
	for _, f := range res.Faults {
		if strings.HasPrefix(f.Err, "heal:") {
			res.fail("fault %s at +%.1fs could not be healed: %s", f.Kind, f.Start.Seconds(), f.Err)
		}
	}
	if n := countOK(res.Ops); n < 50 {
		res.fail("only %d operations succeeded: the cluster made no progress", n)
	}
	res.Report = res.format()
	return res
}

// schedule turns cfg's faults into the nemesis's plan on c, leaving out the
// kinds c cannot make, with a note for each. A nil plan: no faults, the
// workload runs for cfg.Duration.
func schedule(c Cluster, cfg Config) (*plan, []string) {
	var notes []string
	supported := func(ks []string) []string {
		var out []string
		for _, k := range ks {
			if why := unsupported(c, cfg, k); why != "" {
				notes = append(notes, fmt.Sprintf("fault %s skipped on %s: %s", k, c.Describe(), why))
				cfg.Logf("harness: fault %s skipped on %s: %s", k, c.Describe(), why)
				continue
			}
			out = append(out, k)
		}
		return out
	}
	kinds := supported(cfg.Faults)
	if len(cfg.Steps) > 0 {
		var steps [][]string
		for _, st := range cfg.Steps {
			if st = supported(st); len(st) > 0 {
				steps = append(steps, st)
			}
		}
		return &plan{queue: steps}, notes
	}
	if len(kinds) == 0 {
		return nil, notes
	}
	p := &plan{kinds: kinds, passes: max(cfg.Passes, 1), mixed: cfg.Mixed, repeat: cfg.Duration > 0}
	for _, k := range kinds {
		if slices.Contains(composable, k) {
			p.mix = append(p.mix, k)
		}
	}
	return p, notes
}

func countOK(ops []*model.Op) int {
	n := 0
	for _, o := range ops {
		if o.Outcome == model.OK && o.Client >= 0 && o.Node != "replicas" {
			n++
		}
	}
	return n
}

// finalReads reads every key linearizably once the cluster has healed.
func finalReads(c Cluster, cfg Config, rec *recorder, keys []string) {
	cl := &client{id: cfg.Clients, c: c, w: cfg.Workload, rec: rec, hc: &http.Client{Timeout: 5 * time.Second}}
	defer cl.hc.CloseIdleConnections()
	live := c.Live()
	if len(live) == 0 {
		return
	}
	for k, key := range keys {
		op := cl.get(live[k%len(live)], key)
		if op.Outcome == model.Error {
			continue
		}
		rec.add(op)
	}
}

// checkMembers checks that the configuration is what the harness expects:
// every member it started, nothing else.
func checkMembers(c Cluster, res *Result) {
	ms, err := c.Members()
	if err != nil {
		res.fail("members: %v", err)
		return
	}
	var got, want []string
	for _, m := range ms {
		got = append(got, m.Name)
	}
	for i := 0; i < c.Slots(); i++ {
		if n := c.Node(i); n.Member {
			want = append(want, n.Name)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		res.fail("members are %v, want %v", got, want)
	}
}
