package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Config is one run: a workload against a running cluster while the
// nemesis injects faults, then the checks.
type Config struct {
	// Name labels the run in the report.
	Name string
	Workload
	// Faults are the kinds the nemesis injects (see AllFaults); none: the
	// workload runs without faults for Duration.
	Faults []string
	// Duration is how long the nemesis works; 0 means one pass: each kind
	// of Faults once, in a seeded order, then Mixed steps.
	Duration time.Duration
	// Mixed is, in a one-pass run, the number of steps that inject two
	// composable faults at once after the pass; in a run with a Duration,
	// any value above 0 makes a third of the steps mixed.
	Mixed int
	// Hold is the shortest time a fault lasts; the nemesis holds each step
	// between Hold and twice as long (default 2 s).
	Hold time.Duration
	// CheckTimeout bounds porcupine (default 2 minutes).
	CheckTimeout time.Duration
	// OutDir receives the HTML visualization when the check fails.
	OutDir string
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// Result is what a run found.
type Result struct {
	Config        Config
	Took          time.Duration
	Ops           []*Op
	Faults        []FaultRecord
	Linearizable  Linearizability
	SerialReads   int
	Acked         int    // acknowledged writes
	State         *State // the converged replicas
	Failures      []string
	Notes         []string
	Visualization string
	HistoryPath   string // the history as JSON, for -chaos.recheck
	Report        string
}

// savedHistory is the JSON form of a run's history.
type savedHistory struct {
	Name   string       `json:"name"`
	Ops    []*Op        `json:"ops"`
	Faults []Annotation `json:"faults"`
}

// saveHistory writes the history to OutDir, so that a failed or slow check
// can be run again on its own (-chaos.recheck).
func saveHistory(cfg Config, ops []*Op, faults []Annotation) string {
	b, err := json.Marshal(savedHistory{Name: cfg.Name, Ops: ops, Faults: faults})
	if err != nil {
		return ""
	}
	name := "history-" + strings.NewReplacer("/", "_", " ", "_", ":", "", ",", "").Replace(cfg.Name) + ".json"
	path := filepath.Join(cfg.OutDir, name)
	if os.WriteFile(path, b, 0o644) != nil {
		return ""
	}
	return path
}

// LoadHistory reads a history written by a run.
func LoadHistory(path string) (ops []*Op, faults []Annotation, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var h savedHistory
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, nil, fmt.Errorf("chaos: %s: %w", path, err)
	}
	return h.Ops, h.Faults, nil
}

// OK reports whether every check passed.
func (r *Result) OK() bool { return len(r.Failures) == 0 }

func (r *Result) fail(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

// Run drives cfg against c, heals every fault, waits for the replicas to
// agree and checks the history. It returns when every client and fault has
// stopped; the cluster stays up (running, healed) for the next run.
func Run(c *Cluster, cfg Config) *Result {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = 2 * time.Minute
	}
	if cfg.Hold <= 0 {
		cfg.Hold = 2 * time.Second
	}
	if cfg.OutDir == "" {
		cfg.OutDir = os.TempDir()
	}
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("%d nodes, seed %d", c.Size(), cfg.Seed)
	}
	res := &Result{Config: cfg}
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
	waitClients := runClients(ctx, c, cfg.Workload, rec)

	nm := &nemesis{c: c, rng: rand.New(rand.NewPCG(cfg.Seed, 0x6e656d)), rec: rec, prefix: cfg.Prefix, logf: cfg.Logf}
	sleep(ctx, time.Second)
	if len(cfg.Faults) == 0 {
		sleep(ctx, cfg.Duration)
	} else {
		nm.run(ctx, cfg.Faults, cfg.Duration, cfg.Mixed, cfg.Hold)
	}
	if err := nm.restore(); err != nil {
		res.fail("restoring the cluster after the faults: %v", err)
	}
	// Let the clients see the healed cluster before they stop.
	sleep(ctx, 2*time.Second)
	stop()
	waitClients()
	res.Faults = nm.faults
	cfg.Logf("chaos: %s: workload stopped after %s; waiting for the replicas", cfg.Name, time.Since(rec.start).Round(time.Second))

	for i, n := range c.Nodes {
		if n.Member() {
			if err := c.WaitReady(i, 30*time.Second); err != nil {
				res.fail("after healing: %v", err)
			}
		}
	}
	c.checkMembers(res)
	st, err := c.WaitConverged(30 * time.Second)
	if err != nil {
		res.fail("%v", err)
	}
	res.State = st
	keys := make([]string, cfg.Keys)
	for i := range keys {
		keys[i] = cfg.Key(i)
	}
	finalReads(c, cfg, rec, keys)
	if st != nil {
		// The agreed state is one more read of every key, after everything.
		at := rec.now()
		for _, k := range keys {
			op := &Op{Client: cfg.Clients, Node: "replicas", Kind: KindGet, Key: k, Call: at, Return: at + 1}
			if it, ok := st.Items[k]; ok {
				op.Found, op.Got, op.Rev, op.Ver = true, string(it.Value), it.ModRevision, it.Version
			}
			rec.add(op)
		}
	}
	end := rec.now() + 2
	for _, o := range rec.ops {
		if o.Outcome == Unknown {
			o.Return = end
		}
	}
	res.Ops = rec.ops
	res.Took = time.Since(rec.start)

	var anns []Annotation
	for _, f := range res.Faults {
		e := f.End
		if e == 0 {
			e = f.Start
		}
		anns = append(anns, Annotation{Start: int64(f.Start), End: int64(e), Description: f.Kind, Details: f.Detail + " " + f.Err})
	}
	if st != nil && startRev >= 0 {
		res.Notes = append(res.Notes, accountUnknowns(res.Ops, st.Revision-startRev, nm.fillAcked.Load(), nm.fillUnknown.Load()))
	}
	res.HistoryPath = saveHistory(cfg, res.Ops, anns)
	res.Linearizable = CheckLinearizable(res.Ops, anns, cfg.CheckTimeout, cfg.OutDir)
	switch res.Linearizable.Result {
	case porcupine.Illegal:
		res.fail("history is not linearizable (keys %s); visualization: %s", strings.Join(res.Linearizable.BadKeys, " "), res.Linearizable.HTMLPath)
		res.Visualization = res.Linearizable.HTMLPath
	case porcupine.Unknown:
		res.fail("linearizability check did not finish within %s (fewer keys or a lower rate make histories easier)", cfg.CheckTimeout)
	}
	var viol, staleBack []string
	res.SerialReads, viol, staleBack = checkSerializable(res.Ops)
	for _, v := range viol {
		res.fail("serializable read %s", v)
	}
	for _, v := range staleBack {
		res.Notes = append(res.Notes, "serializable read "+v)
	}
	for _, v := range checkClientRevisions(res.Ops) {
		res.fail("%s", v)
	}
	if st != nil {
		var lost []string
		res.Acked, lost = checkLostWrites(res.Ops, keys, st.Items)
		for _, v := range lost {
			res.fail("lost write: %s", v)
		}
	} else {
		res.Acked, _ = checkLostWrites(res.Ops, nil, nil)
	}
	res.Notes = append(res.Notes, c.takeNotes()...)
	for _, e := range c.takeExits() {
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

func countOK(ops []*Op) int {
	n := 0
	for _, o := range ops {
		if o.Outcome == OK && o.Client >= 0 && o.Node != "replicas" {
			n++
		}
	}
	return n
}

// finalReads reads every key linearizably once the cluster has healed.
func finalReads(c *Cluster, cfg Config, rec *recorder, keys []string) {
	cl := &client{id: cfg.Clients, c: c, w: cfg.Workload, rec: rec, hc: &http.Client{Timeout: 5 * time.Second}}
	defer cl.hc.CloseIdleConnections()
	live := c.Live()
	if len(live) == 0 {
		return
	}
	for k, key := range keys {
		op := cl.get(live[k%len(live)], key)
		if op.Outcome == Error {
			continue
		}
		rec.add(op)
	}
}

// checkMembers checks that the configuration is what the harness expects:
// every member it started, nothing else.
func (c *Cluster) checkMembers(res *Result) {
	ms, err := c.Members()
	if err != nil {
		res.fail("members: %v", err)
		return
	}
	var got, want []string
	for _, m := range ms {
		got = append(got, m.Name)
	}
	for _, n := range c.Nodes {
		if n.Member() {
			want = append(want, n.Name)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		res.fail("members are %v, want %v", got, want)
	}
}

// accountUnknowns uses the revision counter as ground truth for unknown
// writes. Every change (a put, a txn's put, a delete that removed a key)
// moves the cluster revision by exactly one; a write whose value was read
// back certainly happened. When the changes the run made are exactly the
// acknowledged ones (workload and filler) plus the unknown writes seen
// afterwards, no other unknown operation changed anything, and it is left
// out of the check (marked Dropped). Unknown operations otherwise stay open
// to the end of the history, where each one widens porcupine's search.
func accountUnknowns(ops []*Op, changes, fillAcked, fillUnknown int64) string {
	seen := map[string]bool{}
	for _, o := range ops {
		if o.Found {
			seen[o.Key+"\x00"+o.Got] = true
		}
	}
	var acked, certain, unknown int64
	for _, o := range ops {
		switch {
		case changed(o):
			acked++
		case o.Outcome == Unknown:
			unknown++
			if o.Value != "" && seen[o.Key+"\x00"+o.Value] {
				certain++
			}
		}
	}
	explained := acked + fillAcked + certain
	if changes != explained {
		return fmt.Sprintf("revisions: %d changes, %d acknowledged (%d of them filler), %d unknown writes seen later; %d unknown operations (and %d filler writes) stay open to the end",
			changes, acked+fillAcked, fillAcked, certain, unknown, fillUnknown)
	}
	dropped := 0
	for _, o := range ops {
		if o.Outcome == Unknown && !(o.Value != "" && seen[o.Key+"\x00"+o.Value]) {
			o.Dropped = true
			dropped++
		}
	}
	return fmt.Sprintf("revisions: %d changes = %d acknowledged (%d of them filler) + %d unknown writes seen later; the other %d unknown operations changed nothing and are left out of the check",
		changes, acked+fillAcked, fillAcked, certain, dropped)
}
