package chaos

import (
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// regState is one key as the model knows it. Rev and Ver are 0 when the key
// is absent, and also when it exists but was last written by an operation
// whose answer never came (the next read that sees it fills them in).
type regState struct {
	exists bool
	value  string
	rev    int64
	ver    int64
}

func (s regState) String() string {
	if !s.exists {
		return "absent"
	}
	r, v := "?", "?"
	if s.rev != 0 {
		r = fmt.Sprint(s.rev)
	}
	if s.ver != 0 {
		v = fmt.Sprint(s.ver)
	}
	return fmt.Sprintf("%s @%s v%s", s.value, r, v)
}

// written is the key after a write of value at revision rev (0: unknown).
func (s regState) written(value string, rev int64) regState {
	n := regState{exists: true, value: value, rev: rev, ver: 1}
	if s.exists {
		n.ver = 0
		if s.ver != 0 {
			n.ver = s.ver + 1
		}
	}
	return n
}

// newer reports whether rev may follow the key's current mod revision:
// revisions grow along the linearization.
func (s regState) newer(rev int64) bool { return !s.exists || s.rev == 0 || rev > s.rev }

// sees checks an observation of the key and returns the state with what it
// learned (the revision and version of a write whose answer was lost). A
// rev of 0 is an observation without revisions (the Redis protocol).
func (s regState) sees(found bool, value string, rev, ver int64) (bool, regState) {
	if !found {
		return !s.exists, s
	}
	if !s.exists || s.value != value || (rev != 0 && s.rev != 0 && s.rev != rev) || (s.ver != 0 && ver != 0 && s.ver != ver) {
		return false, s
	}
	if rev != 0 {
		s.rev = rev
	}
	if ver != 0 {
		s.ver = ver
	}
	return true, s
}

// revMatches says whether "mod revision = match" holds, and whether the
// model can tell (it cannot when the key's revision is unknown).
func (s regState) revMatches(match int64) (holds, certain bool) {
	switch {
	case match == 0:
		return !s.exists, true
	case !s.exists:
		return false, true
	case s.rev == 0:
		return false, false
	}
	return s.rev == match, true
}

// step returns every state the key can be in after op, none when op cannot
// have returned what it did from state s.
func step(s regState, op *Op) []regState {
	one := func(ok bool, n regState) []regState {
		if ok {
			return []regState{n}
		}
		return nil
	}
	switch op.Kind {
	case KindGet:
		return one(s.sees(op.Found, op.Got, op.Rev, op.Ver))

	case KindPut:
		if op.Outcome == Unknown {
			return []regState{s.written(op.Value, 0)}
		}
		return one(s.newer(op.Rev), s.written(op.Value, op.Rev))

	case KindCAS, KindTxnPut:
		holds, certain := s.revMatches(op.Match)
		switch op.Outcome {
		case Unknown:
			if !certain {
				return []regState{s, s.written(op.Value, 0)}
			}
			if holds {
				return []regState{s.written(op.Value, 0)}
			}
			return []regState{s}
		case OK:
			if (certain && !holds) || !s.newer(op.Rev) {
				return nil
			}
			n := s.written(op.Value, op.Rev)
			if op.Kind == KindTxnPut {
				// the txn's own get, after its put
				if !op.Found || op.Got != op.Value || (n.ver != 0 && op.Ver != n.ver) {
					return nil
				}
				n.ver = op.Ver
			}
			return []regState{n}
		default: // Failed
			if certain && holds {
				return nil
			}
			if op.Kind == KindCAS {
				// 412 carries the current mod revision, 0 when absent.
				if !s.exists {
					return one(op.Rev == 0, s)
				}
				if op.Rev == 0 || (s.rev != 0 && op.Rev != s.rev) || op.Rev == op.Match {
					return nil
				}
				s.rev = op.Rev
				return []regState{s}
			}
			if op.Found && op.Rev == op.Match {
				return nil
			}
			return one(s.sees(op.Found, op.Got, op.Rev, op.Ver))
		}

	case KindDelete:
		switch {
		case op.Outcome == Unknown:
			return []regState{{}}
		case op.Deleted == 0:
			return one(!s.exists, s)
		default:
			return one(s.exists && op.Deleted == 1 && s.newer(op.ClusterRev), regState{})
		}

	case KindRespGet:
		return one(s.sees(op.Found, op.Got, 0, 0))

	case KindRespSet:
		// Acknowledged or not, the value is there after it with an unknown
		// revision (SET answers +OK, no revision).
		return []regState{s.written(op.Value, 0)}

	case KindRespDel:
		switch {
		case op.Outcome == Unknown:
			return []regState{{}}
		case op.Deleted == 0:
			return one(!s.exists, s)
		default:
			return one(s.exists && op.Deleted == 1, regState{})
		}

	case KindTxnDelete:
		holds := s.exists && s.value == op.MatchValue
		switch op.Outcome {
		case Unknown:
			if holds {
				return []regState{{}}
			}
			return []regState{s}
		case OK:
			return one(holds && op.Deleted == 1, regState{})
		default:
			if holds {
				return nil
			}
			return one(s.sees(op.Found, op.Got, op.Rev, op.Ver))
		}
	}
	return nil
}

// Model is the porcupine model of one key per partition: a register with
// revisions and versions. It is nondeterministic only where a conditional
// write's outcome is unknown and its condition depends on a revision the
// model does not know.
var Model = (&porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, o := range h {
			k := o.Input.(*Op).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], o)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() []any { return []any{regState{}} },
	Hash: func(state any) uint64 {
		s := state.(regState)
		h := fnv.New64a()
		fmt.Fprintf(h, "%t/%s/%d/%d", s.exists, s.value, s.rev, s.ver)
		return h.Sum64()
	},
	Step: func(state, input, _ any) []any {
		var out []any
		for _, n := range step(state.(regState), input.(*Op)) {
			out = append(out, n)
		}
		return out
	},
	DescribeOperation: func(input, _ any) string { return describeOp(input.(*Op)) },
	DescribeState:     func(state any) string { return state.(regState).String() },
	DescribeOperationMetadata: func(info any) string {
		if info == nil {
			return ""
		}
		return fmt.Sprint(info)
	},
}).ToModel()

// Linearizability is the verdict on a history.
type Linearizability struct {
	Result   porcupine.CheckResult
	Keys     int
	Ops      int
	Took     time.Duration
	BadKeys  []string // keys whose history has no linearization
	HTMLPath string   // porcupine's visualization, when the check failed
}

// Annotation marks a span of the run (a fault) in the visualization.
type Annotation struct {
	Start, End  int64
	Description string
	Details     string
}

// CheckLinearizable checks the linearizable operations of ops (get, put,
// cas, delete and the txns; serializable reads, Error and Dropped operations
// are left out) with porcupine, one partition per key. Unknown operations must already
// carry the end of the history as their return time. When the history is not
// linearizable, it writes porcupine's visualization of the offending keys,
// with the faults as annotations, to htmlDir. A check that runs out of time
// is Unknown, with no visualization.
func CheckLinearizable(ops []*Op, faults []Annotation, timeout time.Duration, htmlDir string) Linearizability {
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
	res.Result = porcupine.CheckOperationsTimeout(Model, hist, timeout)
	res.Took = time.Since(start)
	if res.Result != porcupine.Illegal {
		return res // Ok, or Unknown: out of time, and the rest would be too
	}
	// Find the offending keys, one check each, and draw only those, within
	// what is left of the time (and at least a few seconds).
	left := func() time.Duration { return max(timeout-time.Since(start), 5*time.Second) }
	var bad []porcupine.Operation
	for _, part := range Model.Partition(hist) {
		k := part[0].Input.(*Op).Key
		if porcupine.CheckOperationsTimeout(Model, part, left()) != porcupine.Ok {
			res.BadKeys = append(res.BadKeys, k)
			bad = append(bad, part...)
		}
	}
	if len(bad) == 0 {
		bad = hist
	}
	_, info := porcupine.CheckOperationsVerbose(Model, bad, left())
	var anns []porcupine.Annotation
	for _, f := range faults {
		anns = append(anns, porcupine.Annotation{Tag: "nemesis", Start: f.Start, End: f.End,
			Description: f.Description, Details: f.Details, BackgroundColor: "#f6d6d6"})
	}
	info.AddAnnotations(anns)
	name := fmt.Sprintf("cairn-chaos-%s-%s.html", strings.Join(slices.Compact(res.BadKeys), "+"), time.Now().Format("150405.000"))
	name = strings.NewReplacer("/", "_", " ", "_").Replace(name)
	path := filepath.Join(htmlDir, name)
	if err := porcupine.VisualizePath(Model, info, path); err == nil {
		res.HTMLPath = path
	} else {
		fmt.Fprintf(os.Stderr, "chaos: visualization: %v\n", err)
	}
	return res
}
