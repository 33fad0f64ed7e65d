package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/cairnkv/cairn/test/model"
)

// format renders the report of an eventual run: the run, the writes by
// kind and outcome, the reads, the faults, the convergence and the verdict.
func (r *EventualResult) format() string {
	var b strings.Builder
	cfg := r.Config
	rate := "unlimited"
	if cfg.Rate > 0 {
		rate = fmt.Sprintf("%.0f/s", cfg.Rate)
	}
	var kss []string
	for _, k := range cfg.Keyspaces {
		kss = append(kss, k.String())
	}
	fmt.Fprintf(&b, "== eventual run %q on %s: %d clients, %d keys in each of %s, rate %s, seed %d, %s\n",
		cfg.Name, r.Cluster, cfg.Clients, cfg.Workload.Keys, strings.Join(kss, ", "), rate, cfg.Seed, r.Took.Round(100*time.Millisecond))

	kinds := []string{"put", "put-ttl", "delete"}
	counts := map[string]map[model.WriteOutcome]int{}
	for _, w := range r.Writes {
		k := "put"
		switch {
		case w.Delete:
			k = "delete"
		case !w.Expires.IsZero():
			k = "put-ttl"
		}
		if counts[k] == nil {
			counts[k] = map[model.WriteOutcome]int{}
		}
		counts[k][w.Outcome]++
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "writes\tacked\tfailed\tunknown\trefused\t")
	for _, k := range kinds {
		c := counts[k]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", k, c[model.WriteAcked], c[model.WriteFailed], c[model.WriteUnknown], c[model.WriteRefused])
	}
	fmt.Fprintf(tw, "total %d\t\t\t\t\t\n", len(r.Writes))
	tw.Flush()
	fmt.Fprintln(&b, "  (failed: 503, fewer than W acks, may have landed; unknown: a timeout, may have landed; refused: never sent, no effect)")
	found := 0
	for _, rd := range r.Reads {
		if rd.Found {
			found++
		}
	}
	fmt.Fprintf(&b, "reads: %d answered (%d found a value), %d failed\n", len(r.Reads), found, r.ReadErrors)

	if len(r.Faults) == 0 {
		fmt.Fprintln(&b, "faults: none")
	} else {
		fmt.Fprintln(&b, "faults:")
		for _, f := range r.Faults {
			end := "   -   "
			if f.End > 0 {
				end = fmt.Sprintf("%6.1fs", f.End.Seconds())
			}
			fmt.Fprintf(&b, "  %6.1fs %s  %-18s %s", f.Start.Seconds(), end, f.Kind, f.Detail)
			if f.Err != "" {
				fmt.Fprintf(&b, " [%s]", f.Err)
			}
			fmt.Fprintln(&b)
		}
		if len(cfg.Final) > 0 && cfg.FinalTail > 0 {
			fmt.Fprintf(&b, "  (the last fault, %s, was healed %s after the clients stopped)\n", strings.Join(cfg.Final, "+"), cfg.FinalTail)
		} else if len(cfg.Final) > 0 {
			fmt.Fprintf(&b, "  (the last fault, %s, was healed after the clients stopped)\n", strings.Join(cfg.Final, "+"))
		}
	}

	cv := r.Convergence
	fmt.Fprintf(&b, "checks:\n  convergence (anti-entropy interval %s; up to %s after every node was back):\n", cfg.AntiEntropy, r.Deadline)
	if r.Polls == 0 {
		fmt.Fprintln(&b, "    not checked (see failures)")
	} else if cv.OK() {
		fmt.Fprintf(&b, "    converged %s after every node was back (poll %d): %d keys on %d replica reads, %d holding a value, %d absent everywhere\n",
			r.ConvergedAfter.Round(10*time.Millisecond), r.Polls, cv.Keys, cv.Replicas, cv.Present, cv.Absent)
	} else {
		fmt.Fprintf(&b, "    NOT converged after %s (%d polls): %d violations on the last one\n", r.Waited.Round(10*time.Millisecond), r.Polls, len(cv.Violations))
	}
	fmt.Fprintf(&b, "  acknowledged writes: %d; lost or resurrected: %d\n", cv.Outcomes[model.WriteAcked], countRules(cv.Violations, "lost write", "resurrection"))
	fmt.Fprintf(&b, "  reads checked (values written, at their versions): %d; bad: %d\n", len(r.Reads), len(r.ReadViolations))
	if m := cfg.Materialize; m != nil {
		switch {
		case !cv.OK():
			fmt.Fprintf(&b, "  materialized directories of %s: not checked (no convergence)\n", m.Prefix)
		case len(r.MaterializeFailures) == 0:
			fmt.Fprintf(&b, "  materialized directories of %s: every member's equals the converged keyspace (%s after convergence)\n",
				m.Prefix, r.MaterializedAfter.Round(10*time.Millisecond))
		default:
			fmt.Fprintf(&b, "  materialized directories of %s: %d differ\n", m.Prefix, len(r.MaterializeFailures))
		}
	}
	if m := cfg.Mirror; m != nil {
		switch {
		case !cv.OK():
			fmt.Fprintf(&b, "  mirror bucket of %s: not checked (no convergence)\n", m.Prefix)
		case len(r.MirrorFailures) == 0:
			fmt.Fprintf(&b, "  mirror bucket of %s: equals the converged keyspace (%s after convergence; %d requests refused while it was down)\n",
				m.Prefix, r.MirroredAfter.Round(10*time.Millisecond), m.Bucket.Refused())
		default:
			fmt.Fprintf(&b, "  mirror bucket of %s: DIFFERS from the converged keyspace (%d requests refused while it was down)\n", m.Prefix, m.Bucket.Refused())
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	if r.HistoryPath != "" && !r.OK() {
		fmt.Fprintf(&b, "  writes, reads and end state: %s\n", r.HistoryPath)
	}
	if r.OK() {
		fmt.Fprintln(&b, "verdict: PASS")
	} else {
		fmt.Fprintf(&b, "verdict: FAIL (%d)\n", len(r.Failures))
		for i, f := range r.Failures {
			if i == 20 {
				fmt.Fprintf(&b, "  … and %d more\n", len(r.Failures)-i)
				break
			}
			fmt.Fprintf(&b, "  - %s\n", f)
		}
	}
	return b.String()
}

func countRules(vs []model.Violation, rules ...string) int {
	n := 0
	for _, v := range vs {
		for _, r := range rules {
			if v.Rule == r {
				n++
			}
		}
	}
	return n
}

// writeReport logs the report of an eventual run and writes it to dir.
func writeReport(t *testing.T, dir string, res *EventualResult) {
	t.Helper()
	t.Log("\n" + res.Report)
	name := "report-" + strings.NewReplacer("/", "_", " ", "_").Replace(res.Config.Name) + ".txt"
	_ = os.WriteFile(filepath.Join(dir, name), []byte(res.Report), 0o644)
}

// MustRunEventual runs cfg on c with dir as its output directory, logs the
// report (and writes it to dir), and fails the test on a failed check.
func MustRunEventual(t *testing.T, c Cluster, dir string, cfg EventualConfig) *EventualResult {
	t.Helper()
	cfg.OutDir, cfg.Logf = dir, t.Logf
	res := RunEventual(c, cfg)
	writeReport(t, dir, res)
	if !res.OK() {
		first := res.Failures[:min(len(res.Failures), 3)]
		more := ""
		if n := len(res.Failures) - len(first); n > 0 {
			more = fmt.Sprintf("; and %d more (see the report)", n)
		}
		t.Errorf("eventual run %q failed: %s%s", cfg.Name, strings.Join(first, "; "), more)
	}
	return res
}

// CheckerCatchesDivergence proves the convergence check can fail, on a
// cluster c whose nodes run without anti-entropy and read repair (a test
// build or hook that switches them off): an eventual run with cfg (its
// final fault holds a minority away while every node takes writes, and is
// healed only once the clients stopped) must end with replicas that differ
// or acknowledged writes missing, and the harness must report it. A run
// that fails for any other reason alone (no progress, a crash, the API)
// proves nothing and fails the test.
func CheckerCatchesDivergence(t *testing.T, c Cluster, dir string, cfg EventualConfig) *EventualResult {
	t.Helper()
	cfg.OutDir, cfg.Logf, cfg.ExpectDivergence = dir, t.Logf, true
	if cfg.Final == nil {
		cfg.Final = []string{FaultIsolateFollower}
	}
	res := RunEventual(c, cfg)
	writeReport(t, dir, res)
	if res.Polls == 0 {
		t.Fatalf("the run stopped before the end state was read: %s", strings.Join(res.Failures, "; "))
	}
	if res.Convergence.OK() {
		t.Fatalf("the convergence check passed %d keys on a cluster without anti-entropy and read repair (after %s): the check, or the broken build, is wrong",
			res.Convergence.Keys, res.ConvergedAfter)
	}
	diverged := countRules(res.Convergence.Violations, "replicas differ", "lost write", "resurrection")
	if diverged == 0 {
		t.Fatalf("the check failed, but not because replicas diverged: %v", res.Convergence.Violations)
	}
	if n := res.Convergence.Outcomes[model.WriteAcked]; n < 30 {
		t.Fatalf("only %d writes were acknowledged: the run proves nothing", n)
	}
	t.Logf("caught, as it must be: %d keys, %d violations of replicas that differ or writes lost after %s; first: %s",
		res.Convergence.Keys, diverged, res.Waited.Round(10*time.Millisecond), res.Convergence.Violations[0])
	return res
}

// CheckerCatchesMaterializeDrift proves the materialize check can fail, on
// a cluster c whose materializers are built to lose changes (the
// cairn_broken_materialize build ignores deletes): the run must converge,
// and the check must find a directory that differs from the converged
// keyspace. Anything else proves nothing and fails the test.
func CheckerCatchesMaterializeDrift(t *testing.T, c Cluster, dir string, cfg EventualConfig) *EventualResult {
	t.Helper()
	cfg.OutDir, cfg.Logf = dir, t.Logf
	if cfg.Materialize == nil {
		t.Fatal("CheckerCatchesMaterializeDrift needs a run with Materialize")
	}
	res := RunEventual(c, cfg)
	writeReport(t, dir, res)
	if !res.Convergence.OK() {
		t.Fatalf("the run did not converge, so the materialize check did not run: %s", strings.Join(res.Failures, "; "))
	}
	if len(res.MaterializeFailures) == 0 {
		absent := 0
		for _, k := range res.Final {
			if strings.HasPrefix(k.Key, cfg.Materialize.Prefix) && !slices.ContainsFunc(k.Replicas, func(r model.Replica) bool { return r.Present }) {
				absent++
			}
		}
		t.Fatalf("the materialize check passed on nodes built to ignore deletes (%d keys of %s absent at the end): the check, or the broken build, is wrong",
			absent, cfg.Materialize.Prefix)
	}
	t.Logf("caught, as it must be: %d directories differ; first: %s", len(res.MaterializeFailures), res.MaterializeFailures[0])
	return res
}
