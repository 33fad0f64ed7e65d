package model

import (
	"fmt"
	"hash/fnv"
	"sort"

	"github.com/anishathalye/porcupine"
)

// kvState is one key as the model knows it. rev and ver are 0 when the key
// is absent, and also when it exists but was last written by an operation
// whose answer never came or carried no revision (the next read that sees it
// fills them in).
type kvState struct {
	exists bool
	value  string
	rev    int64
	ver    int64
}

func (s kvState) String() string {
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
func (s kvState) written(value string, rev int64) kvState {
	n := kvState{exists: true, value: value, rev: rev, ver: 1}
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
func (s kvState) newer(rev int64) bool { return !s.exists || s.rev == 0 || rev > s.rev }

// sees checks an observation of the key and returns the state with what it
// learned (the revision and version of a write whose answer was lost). A
// rev of 0 is an observation without revisions (the Redis protocol).
func (s kvState) sees(found bool, value string, rev, ver int64) (bool, kvState) {
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
func (s kvState) revMatches(match int64) (holds, certain bool) {
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

// valueMatches says whether a txn-swap's condition holds: the key holds
// match, or is absent when match is "".
func (s kvState) valueMatches(match string) bool {
	if match == "" {
		return !s.exists
	}
	return s.exists && s.value == match
}

// step returns every state the key can be in after op, none when op cannot
// have returned what it did from state s.
func step(s kvState, op *Op) []kvState {
	one := func(ok bool, n kvState) []kvState {
		if ok {
			return []kvState{n}
		}
		return nil
	}
	switch op.Kind {
	case KindGet:
		return one(s.sees(op.Found, op.Got, op.Rev, op.Ver))

	case KindPut:
		if op.Outcome == Unknown {
			return []kvState{s.written(op.Value, 0)}
		}
		return one(s.newer(op.Rev), s.written(op.Value, op.Rev))

	case KindCAS, KindTxnPut, KindTxnSwap:
		holds, certain := s.revMatches(op.Match)
		if op.Kind == KindTxnSwap {
			holds, certain = s.valueMatches(op.MatchValue), true
		}
		switch op.Outcome {
		case Unknown:
			if !certain {
				return []kvState{s, s.written(op.Value, 0)}
			}
			if holds {
				return []kvState{s.written(op.Value, 0)}
			}
			return []kvState{s}
		case OK:
			if (certain && !holds) || !s.newer(op.Rev) {
				return nil
			}
			n := s.written(op.Value, op.Rev)
			if op.Kind != KindCAS {
				// the txn's own get, after its put
				if !op.Found || op.Got != op.Value || (n.ver != 0 && op.Ver != n.ver) {
					return nil
				}
				n.ver = op.Ver
			}
			return []kvState{n}
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
				return []kvState{s}
			}
			if op.Kind == KindTxnPut && op.Found && op.Rev == op.Match {
				return nil
			}
			return one(s.sees(op.Found, op.Got, op.Rev, op.Ver))
		}

	case KindDelete:
		switch {
		case op.Outcome == Unknown:
			return []kvState{{}}
		case op.Deleted == 0:
			return one(!s.exists, s)
		default:
			return one(s.exists && op.Deleted == 1 && s.newer(op.ClusterRev), kvState{})
		}

	case KindRespGet:
		return one(s.sees(op.Found, op.Got, 0, 0))

	case KindRespSet:
		// Acknowledged or not, the value is there after it with an unknown
		// revision (SET answers +OK, no revision).
		return []kvState{s.written(op.Value, 0)}

	case KindRespDel:
		switch {
		case op.Outcome == Unknown:
			return []kvState{{}}
		case op.Deleted == 0:
			return one(!s.exists, s)
		default:
			return one(s.exists && op.Deleted == 1, kvState{})
		}

	case KindTxnDelete:
		holds := s.exists && s.value == op.MatchValue
		switch op.Outcome {
		case Unknown:
			if holds {
				return []kvState{{}}
			}
			return []kvState{s}
		case OK:
			return one(holds && op.Deleted == 1, kvState{})
		default:
			if holds {
				return nil
			}
			return one(s.sees(op.Found, op.Got, op.Rev, op.Ver))
		}
	}
	return nil
}

// kvModel is the porcupine model of one key per partition: a register with
// revisions and versions. It is nondeterministic only where a conditional
// write's outcome is unknown and its condition depends on a revision the
// model does not know.
var kvModel = (&porcupine.NondeterministicModel{
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
	Init: func() []any { return []any{kvState{}} },
	Hash: func(state any) uint64 {
		s := state.(kvState)
		h := fnv.New64a()
		fmt.Fprintf(h, "%t/%s/%d/%d", s.exists, s.value, s.rev, s.ver)
		return h.Sum64()
	},
	Step: func(state, input, _ any) []any {
		var out []any
		for _, n := range step(state.(kvState), input.(*Op)) {
			out = append(out, n)
		}
		return out
	},
	DescribeOperation: func(input, _ any) string { return input.(*Op).Describe() },
	DescribeState:     func(state any) string { return state.(kvState).String() },
	DescribeOperationMetadata: func(info any) string {
		if info == nil {
			return ""
		}
		return fmt.Sprint(info)
	},
}).ToModel()
