package chaos

import (
	"context"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// testCheckerCatchesStaleReads proves the checker can fail (part of the
// long sweep: go test -run 'TestChaos$/checker' ./test/chaos -args
// -chaos.long). Every node runs with CAIRN_DEBUG_UNSAFE_READS=1 (a
// faultinject-only switch that makes a node that is not the leader serve
// linearizable reads from its own state, without the read barrier); a
// follower is cut off, writes go on through the majority and reads go to
// the stale follower. The history must be found not linearizable, and the
// visualization written. Then a whole harness run (workload, nemesis,
// checks) on the same cluster must fail as well.
func testCheckerCatchesStaleReads(t *testing.T) {
	dir := runDir(t)
	c := mustCluster(t, dir, 3, 0, "CAIRN_DEBUG_UNSAFE_READS=1")
	l, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	f := (l + 1) % 3
	w := Workload{Clients: 2, Keys: 2, Prefix: "stale/", Timeout: 3 * time.Second}
	rec := &recorder{start: time.Now()}
	newClient := func(id int) *client {
		return &client{id: id, c: c, w: w, rec: rec, rng: rand.New(rand.NewPCG(uint64(id), 7)),
			hc: &http.Client{Timeout: w.Timeout}, known: map[string]known{}}
	}
	writer, reader := newClient(0), newClient(1)
	defer writer.hc.CloseIdleConnections()
	defer reader.hc.CloseIdleConnections()
	// Both keys get a value everyone has, then the follower is cut off.
	for k := 0; k < w.Keys; k++ {
		rec.add(writer.put(l, w.Key(k)))
	}
	time.Sleep(300 * time.Millisecond)
	c.Partition(f)
	t.Logf("%s (follower) cut off; writing through %s, reading through %s", c.Nodes[f].Name, c.Nodes[l].Name, c.Nodes[f].Name)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, cl := range []*client{writer, reader} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				key := w.Key(cl.rng.IntN(w.Keys))
				var op *Op
				if cl == writer {
					op = cl.put(l, key)
				} else {
					op = cl.get(f, key)
				}
				rec.add(op)
				sleep(ctx, 20*time.Millisecond)
			}
		}()
	}
	wg.Wait()
	c.Heal()
	end := rec.now() + 1
	for _, o := range rec.ops {
		if o.Outcome == Unknown {
			o.Return = end
		}
	}
	reads := 0
	for _, o := range rec.ops {
		if o.Kind == KindGet && o.Outcome == OK {
			reads++
		}
	}
	if reads < 10 {
		t.Fatalf("only %d reads from the cut-off follower succeeded: the unsafe read path is not on", reads)
	}
	res := CheckLinearizable(rec.ops, []Annotation{{Start: 0, End: end, Description: "follower cut off"}}, time.Minute, dir)
	if res.Result != porcupine.Illegal {
		t.Fatalf("the checker accepted %d operations served by a broken read path (%s)", res.Ops, res.Result)
	}
	if _, err := os.Stat(res.HTMLPath); err != nil {
		t.Fatalf("no visualization: %v", err)
	}
	t.Logf("caught, as it must be: %d operations, keys %v not linearizable; visualization %s (removed with the run directory unless -chaos.keep)", res.Ops, res.BadKeys, res.HTMLPath)

	// The whole harness (workload, nemesis, checks, report) must say so too.
	run := Run(c, Config{Name: "unsafe reads under partitions", Workload: workload("stale/run/", 1),
		Faults: []string{FaultIsolateLeader, FaultPartitionMinority}, Duration: 8 * time.Second, OutDir: dir, Logf: t.Logf})
	t.Log("\n" + run.Report)
	if run.OK() || run.Linearizable.Result != porcupine.Illegal || run.Visualization == "" {
		t.Fatalf("the harness passed a cluster with a broken read path")
	}
}
