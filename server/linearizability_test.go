package server_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/test/cluster"
)

// The register model for one key. Values are unique per write, so a read
// tells which write it saw. An operation whose outcome is unknown (timeout,
// no leader) returns "never" in the history, so the checker may place it
// anywhere after its call, or effectively not at all.
type regInput struct {
	key      string
	op       string // get, put, cas
	value    string
	expected string // cas: the value that must be there ("" = absent)
}

type regOutput struct {
	value   string // get: what was read ("" = absent)
	ok      bool   // cas: whether it swapped
	unknown bool
}

var registerModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(regInput).key
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(string), input.(regInput), output.(regOutput)
		switch in.op {
		case "get":
			return out.unknown || out.value == s, s
		case "put":
			return true, in.value
		case "cas":
			if out.unknown {
				if s == in.expected {
					return true, in.value
				}
				return true, s
			}
			if out.ok {
				return s == in.expected, in.value
			}
			return s != in.expected, s
		}
		return false, s
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		switch {
		case out.unknown:
			return fmt.Sprintf("%s(%s %q) -> ?", in.op, in.key, in.value)
		case in.op == "get":
			return fmt.Sprintf("get(%s) -> %q", in.key, out.value)
		case in.op == "cas":
			return fmt.Sprintf("cas(%s %q->%q) -> %v", in.key, in.expected, in.value, out.ok)
		}
		return fmt.Sprintf("put(%s %q)", in.key, in.value)
	},
}

// TestLinearizableUnderPartitions drives concurrent clients through every
// node (writes forwarded by followers, reads through the read index) while
// the leader or a follower is repeatedly cut off, and checks the history
// with porcupine.
func TestLinearizableUnderPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("fault-injection run")
	}
	c := cluster.New(t, 3, cluster.Options{})
	res, path := checkUnderPartitions(t, c, 8*time.Second)
	if res != porcupine.Ok {
		t.Fatalf("history is %s; visualization: %s", res, path)
	}
}

// checkUnderPartitions runs the workload and the nemesis for d and checks
// the history; on a violation it writes porcupine's visualization and returns its path.
func checkUnderPartitions(t *testing.T, c *cluster.Cluster, duration time.Duration) (porcupine.CheckResult, string) {
	const clients, keys = 6, 3
	start := time.Now()
	var mu sync.Mutex
	var history []porcupine.Operation
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for cl := 0; cl < clients; cl++ {
		wg.Add(1)
		go func(cl int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(cl), 7))
			lastSeen := map[string]string{}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				node := rng.IntN(3)
				svc := c.Nodes[node].S.Service()
				key := fmt.Sprintf("lin/%d", rng.IntN(keys))
				in := regInput{key: key, value: fmt.Sprintf("c%d-%d", cl, n)}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				call := time.Since(start).Nanoseconds()
				var out regOutput
				var err error
				switch p := rng.IntN(100); {
				case p < 40:
					in.op = "get"
					var r *kv.Record
					r, err = svc.Get(ctx, key, kv.ReadOptions{})
					if err == nil {
						out.value = string(r.Value)
					} else if errors.Is(err, kv.ErrKeyNotFound) {
						err = nil
					}
					if err == nil {
						lastSeen[key] = out.value
					}
				case p < 80:
					in.op = "put"
					_, err = svc.Put(ctx, key, []byte(in.value), kv.PutOptions{})
				default:
					in.op, in.expected = "cas", lastSeen[key]
					t := kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: key, Value: []byte(in.value)}}}
					if in.expected == "" {
						t.Compare = []kv.Compare{{Key: key, Target: kv.TargetExists, Op: "=", Exists: false}}
					} else {
						t.Compare = []kv.Compare{{Key: key, Target: kv.TargetValue, Op: "=", Value: []byte(in.expected)}}
					}
					var res *kv.TxnResult
					res, err = svc.Txn(ctx, t)
					if err == nil {
						out.ok = res.Succeeded
					}
				}
				cancel()
				ret := time.Since(start).Nanoseconds()
				if err != nil {
					if in.op == "get" {
						continue // a failed read has no effect
					}
					out.unknown, ret = true, 1<<62
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: cl, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		}(cl)
	}
	// Nemesis: cut off the leader or a follower for a while, then heal.
	faults := 0
	for time.Since(start) < duration {
		time.Sleep(700 * time.Millisecond)
		victim := c.Leader()
		if victim < 0 || faults%2 == 1 {
			victim = (faults + 1) % 3
		}
		c.Partition(victim)
		faults++
		time.Sleep(900 * time.Millisecond)
		c.Heal()
	}
	close(stop)
	wg.Wait()
	c.WaitConverged(20 * time.Second)

	res, info := porcupine.CheckOperationsVerbose(registerModel, history, 60*time.Second)
	ok, unknown := 0, 0
	for _, op := range history {
		if op.Output.(regOutput).unknown {
			unknown++
		} else {
			ok++
		}
	}
	t.Logf("%d operations (%d with unknown outcome), %d partitions: %s", len(history), unknown, faults, res)
	if ok < 100 {
		t.Fatalf("only %d operations completed: the cluster did not make progress", ok)
	}
	if res != porcupine.Illegal {
		return res, ""
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("cairn-linearizability-%d.html", time.Now().UnixNano()))
	if err := porcupine.VisualizePath(registerModel, info, path); err != nil {
		t.Logf("visualization: %v", err)
	}
	return res, path
}
