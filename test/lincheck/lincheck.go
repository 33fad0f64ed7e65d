// Package lincheck checks histories of register operations (get, put,
// compare-and-swap by value) for linearizability with porcupine, one key at a
// time. Values are unique per write, so a read names the write it saw. An
// operation whose outcome is unknown (timeout, no leader, connection lost) is
// recorded with Unknown set: the checker may place it anywhere after its call,
// or treat it as never having happened.
package lincheck

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Input is one operation's request.
type Input struct {
	Key string
	// Op is "get", "put" or "cas".
	Op    string
	Value string
	// Expected is what a cas requires the key to hold ("" = absent).
	Expected string
}

// Output is one operation's result.
type Output struct {
	Value   string // get: what was read ("" = absent)
	OK      bool   // cas: whether it swapped
	Unknown bool
}

// Model is the register model, partitioned by key.
var Model = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range h {
			k := op.Input.(Input).Key
			if _, ok := byKey[k]; !ok {
				order = append(order, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(order))
		for _, k := range order {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(string), input.(Input), output.(Output)
		switch in.Op {
		case "get":
			return out.Unknown || out.Value == s, s
		case "put":
			return true, in.Value
		case "cas":
			if out.Unknown {
				if s == in.Expected {
					return true, in.Value
				}
				return true, s
			}
			if out.OK {
				return s == in.Expected, in.Value
			}
			return s != in.Expected, s
		}
		return false, s
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(Input), output.(Output)
		switch {
		case out.Unknown:
			return fmt.Sprintf("%s(%s %q) -> ?", in.Op, in.Key, in.Value)
		case in.Op == "get":
			return fmt.Sprintf("get(%s) -> %q", in.Key, out.Value)
		case in.Op == "cas":
			return fmt.Sprintf("cas(%s %q->%q) -> %v", in.Key, in.Expected, in.Value, out.OK)
		}
		return fmt.Sprintf("put(%s %q)", in.Key, in.Value)
	},
}

// History collects operations from concurrent clients.
type History struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
}

// NewHistory starts the clock.
func NewHistory() *History { return &History{start: time.Now()} }

// Now is the time to record as an operation's call or return.
func (h *History) Now() int64 { return time.Since(h.start).Nanoseconds() }

// Add records a completed operation. A failed read should not be added (it
// had no effect); a failed write is added with Unknown set.
func (h *History) Add(client int, in Input, call int64, out Output) {
	ret := h.Now()
	if out.Unknown {
		ret = 1 << 62
	}
	h.mu.Lock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	h.mu.Unlock()
}

// Counts returns how many operations completed and how many have unknown outcomes.
func (h *History) Counts() (known, unknown int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, op := range h.ops {
		if op.Output.(Output).Unknown {
			unknown++
		} else {
			known++
		}
	}
	return known, unknown
}

// Check checks the history; when it is not linearizable it writes
// porcupine's HTML visualization to a temporary file and returns its path.
func (h *History) Check(timeout time.Duration) (porcupine.CheckResult, string) {
	h.mu.Lock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	h.mu.Unlock()
	res, info := porcupine.CheckOperationsVerbose(Model, ops, timeout)
	if res != porcupine.Illegal {
		return res, ""
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("cairn-linearizability-%d.html", time.Now().UnixNano()))
	if err := porcupine.VisualizePath(Model, info, path); err != nil {
		return res, "(visualization failed: " + err.Error() + ")"
	}
	return res, path
}
