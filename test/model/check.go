package model

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Verdict is the outcome of a linearizability check.
type Verdict int

// Verdicts.
const (
	// Linearizable: every key's history has a linearization.
	Linearizable Verdict = iota
	// NotLinearizable: some key's history has none (the visualization shows where).
	NotLinearizable
	// TimedOut: the check ran out of time before it could tell.
	TimedOut
)

func (v Verdict) String() string {
	return [...]string{"ok", "VIOLATED", "UNKNOWN (timed out)"}[v]
}

// Linearizability is the verdict on a history.
type Linearizability struct {
	Verdict  Verdict
	Keys     int
	Ops      int
	Took     time.Duration
	BadKeys  []string // keys whose history has no linearization
	HTMLPath string   // porcupine's visualization, when the check failed
}

// Check checks the linearizable operations of ops (serializable reads,
// Error and Dropped operations are left out) against the register model,
// one partition per key, within timeout. Unknown operations must already
// carry the end of the history as their return time. When the history is
// not linearizable, Check writes porcupine's visualization of the offending
// keys, with faults as annotations, to htmlDir. A check that runs out of
// time is TimedOut, with no visualization.
func Check(ops []*Op, faults []Annotation, timeout time.Duration, htmlDir string) Linearizability {
	var hist []porcupine.Operation
	keys := map[string]bool{}
	for _, o := range ops {
		if o.Kind == KindSerialGet || o.Outcome == Error || o.Dropped {
			continue
		}
		keys[o.Key] = true
		hist = append(hist, porcupine.Operation{ClientId: o.Client, Input: o, Output: o, Call: o.Call, Return: o.Return,
			Metadata: fmt.Sprintf("client %d via %s", o.Client, o.Node)})
	}
	res := Linearizability{Keys: len(keys), Ops: len(hist)}
	start := time.Now()
	r := porcupine.CheckOperationsTimeout(kvModel, hist, timeout)
	res.Took = time.Since(start)
	switch r {
	case porcupine.Ok:
		return res
	case porcupine.Unknown:
		res.Verdict = TimedOut // and finding the bad keys would be too
		return res
	}
	res.Verdict = NotLinearizable
	// Find the offending keys, one check each, and draw only those, within
	// what is left of the time (and at least a few seconds).
	left := func() time.Duration { return max(timeout-time.Since(start), 5*time.Second) }
	var bad []porcupine.Operation
	for _, part := range kvModel.Partition(hist) {
		k := part[0].Input.(*Op).Key
		if porcupine.CheckOperationsTimeout(kvModel, part, left()) != porcupine.Ok {
			res.BadKeys = append(res.BadKeys, k)
			bad = append(bad, part...)
		}
	}
	if len(bad) == 0 {
		bad = hist
	}
	_, info := porcupine.CheckOperationsVerbose(kvModel, bad, left())
	var anns []porcupine.Annotation
	for _, f := range faults {
		anns = append(anns, porcupine.Annotation{Tag: "nemesis", Start: f.Start, End: f.End,
			Description: f.Description, Details: f.Details, BackgroundColor: "#f6d6d6"})
	}
	info.AddAnnotations(anns)
	name := fmt.Sprintf("cairn-linearizability-%s-%s.html", strings.Join(slices.Compact(res.BadKeys), "+"), time.Now().Format("150405.000"))
	name = strings.NewReplacer("/", "_", " ", "_").Replace(name)
	path := filepath.Join(htmlDir, name)
	if err := porcupine.VisualizePath(kvModel, info, path); err == nil {
		res.HTMLPath = path
	} else {
		fmt.Fprintf(os.Stderr, "model: visualization: %v\n", err)
	}
	return res
}
