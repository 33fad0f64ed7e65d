package harness

import (
	"context"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cairnkv/cairn/test/model"
)

// CheckerCatchesStaleReads proves the checker can fail, on a 3-node cluster
// c whose nodes run with CAIRN_DEBUG_UNSAFE_READS=1 (a faultinject-only
// switch that makes a node that is not the leader serve linearizable reads
// from its own state, without the read barrier). A follower is cut off,
// writes go on through the majority and reads go to the stale follower: the
// history must be found not linearizable, and the visualization written to
// dir. Then a whole harness run with workload w (and the faults
// isolate-leader and partition-minority) on the same cluster must fail as
// well.
func CheckerCatchesStaleReads(t *testing.T, c Cluster, dir string, w Workload) {
	t.Helper()
	l, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	f := (l + 1) % 3
	d := Workload{Clients: 2, Keys: 2, Prefix: "stale/", Timeout: 3 * time.Second}
	rec := &recorder{start: time.Now()}
	newClient := func(id int) *client {
		return &client{id: id, c: c, w: d, rec: rec, rng: rand.New(rand.NewPCG(uint64(id), 7)),
			hc: &http.Client{Timeout: d.Timeout}, known: map[string]known{}}
	}
	writer, reader := newClient(0), newClient(1)
	defer writer.hc.CloseIdleConnections()
	defer reader.hc.CloseIdleConnections()
	// Both keys get a value everyone has, then the follower is cut off.
	for k := 0; k < d.Keys; k++ {
		rec.add(writer.put(l, d.Key(k)))
	}
	time.Sleep(300 * time.Millisecond)
	c.Partition(f)
	t.Logf("%s (follower) cut off; writing through %s, reading through %s", c.Node(f).Name, c.Node(l).Name, c.Node(f).Name)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, cl := range []*client{writer, reader} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				key := d.Key(cl.rng.IntN(d.Keys))
				var op *model.Op
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
		if o.Outcome == model.Unknown {
			o.Return = end
		}
	}
	reads := 0
	for _, o := range rec.ops {
		if o.Kind == model.KindGet && o.Outcome == model.OK {
			reads++
		}
	}
	if reads < 10 {
		t.Fatalf("only %d reads from the cut-off follower succeeded: the unsafe read path is not on", reads)
	}
	res := model.Check(rec.ops, []model.Annotation{{Start: 0, End: end, Description: "follower cut off"}}, time.Minute, dir)
	if res.Verdict != model.NotLinearizable {
		t.Fatalf("the checker accepted %d operations served by a broken read path (%s)", res.Ops, res.Verdict)
	}
	if _, err := os.Stat(res.HTMLPath); err != nil {
		t.Fatalf("no visualization: %v", err)
	}
	t.Logf("caught, as it must be: %d operations, keys %v not linearizable; visualization %s ", res.Ops, res.BadKeys, res.HTMLPath)

	// The whole harness (workload, nemesis, checks, report) must say so too.
	w.Prefix, w.Seed = "stale/run/", 1
	out := Run(c, Config{Name: "unsafe reads under partitions", Workload: w,
		Faults: []string{FaultIsolateLeader, FaultPartitionMinority}, Duration: 8 * time.Second, OutDir: dir, Logf: t.Logf})
	t.Log("\n" + out.Report)
	if out.OK() || out.Linearizable.Verdict != model.NotLinearizable || out.Visualization == "" {
		t.Fatalf("the harness passed a cluster with a broken read path")
	}
}
