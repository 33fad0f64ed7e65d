package harness

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cairnkv/cairn/test/model"
)

// format renders the report: the run, operations by kind and outcome, the
// faults with their times, the checks and the verdict.
func (r *Result) format() string {
	var b strings.Builder
	cfg := r.Config
	rate := "unlimited"
	if cfg.Rate > 0 {
		rate = fmt.Sprintf("%.0f/s", cfg.Rate)
	}
	fmt.Fprintf(&b, "== chaos run %q on %s: %d clients, %d keys, rate %s, seed %d, %s\n",
		cfg.Name, r.Cluster, cfg.Clients, cfg.Keys, rate, cfg.Seed, r.Took.Round(100*time.Millisecond))

	counts := map[model.Kind]map[model.Outcome]int{}
	total := 0
	for _, o := range r.Ops {
		if o.Node == "replicas" || o.Client >= cfg.Clients {
			continue // the harness's own final reads
		}
		if counts[o.Kind] == nil {
			counts[o.Kind] = map[model.Outcome]int{}
		}
		counts[o.Kind][o.Outcome]++
		total++
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operations\tok\tfailed\tunknown\terror\t")
	for _, k := range model.Kinds {
		c := counts[k]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", k, c[model.OK], c[model.Failed], c[model.Unknown], c[model.Error])
	}
	fmt.Fprintf(tw, "total %d\t\t\t\t\t\n", total)
	tw.Flush()
	fmt.Fprintln(&b, "  (failed: a definite no, such as a 412; unknown: a write that timed out or got a 503 and may have happened; error: a failed read or a refused connection, no effect)")

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
	}

	l := r.Linearizable
	fmt.Fprintf(&b, "checks:\n  linearizability: %s (porcupine, %d keys, %d operations, %s)\n",
		l.Verdict, l.Keys, l.Ops, l.Took.Round(time.Millisecond))
	if l.HTMLPath != "" {
		fmt.Fprintf(&b, "    keys with no linearization: %s\n    visualization: %s\n", strings.Join(l.BadKeys, " "), l.HTMLPath)
	}
	fmt.Fprintf(&b, "  serializable reads monotonic per client and node: %d reads checked\n", r.SerialReads)
	fmt.Fprintf(&b, "  acknowledged writes: %d; lost: %d\n", r.Acked, countPrefix(r.Failures, "lost write"))
	if r.State != nil {
		fmt.Fprintf(&b, "  replicas identical: %s at applied index %d, revision %d, %d keys, state hash %s\n",
			strings.Join(r.State.Nodes, " "), r.State.AppliedIndex, r.State.Revision, len(r.State.Items), r.State.Hash)
	} else {
		fmt.Fprintln(&b, "  replicas identical: NO (see failures)")
	}
	if m := r.Config.Mirror; m != nil {
		switch {
		case r.State == nil:
			fmt.Fprintf(&b, "  mirror bucket of %s: not checked (no agreed state)\n", m.Prefix)
		case len(r.MirrorFailures) == 0:
			fmt.Fprintf(&b, "  mirror bucket of %s: equals the keyspace read linearizably (%s after the replicas agreed)\n",
				m.Prefix, r.MirroredAfter.Round(10*time.Millisecond))
		default:
			fmt.Fprintf(&b, "  mirror bucket of %s: DIFFERS from the keyspace read linearizably\n", m.Prefix)
		}
	}
	if w := r.Watch; w != nil {
		verdict := "every change once, in order, caught up"
		if len(w.Failures) > 0 {
			verdict = fmt.Sprintf("%d FAILURES", len(w.Failures))
		}
		fmt.Fprintf(&b, "  watches of %q: %d watchers, %d streams (%d resumed), %d events: %s\n",
			cfg.Prefix, w.Watchers, w.Streams, w.Resumed, w.Events, verdict)
		if r.WatchPath != "" {
			fmt.Fprintf(&b, "    streams and reference feed: %s\n", r.WatchPath)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	if !r.OK() && r.HistoryPath != "" {
		fmt.Fprintf(&b, "  history (for -chaos.recheck): %s\n", r.HistoryPath)
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

func countPrefix(xs []string, p string) int {
	n := 0
	for _, x := range xs {
		if strings.HasPrefix(x, p) {
			n++
		}
	}
	return n
}
