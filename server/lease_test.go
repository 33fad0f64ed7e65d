//go:build faultinject

package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnkv/cairn/config"
	"github.com/cairnkv/cairn/test/cluster"
	"github.com/cairnkv/cairn/test/harness"
	"github.com/cairnkv/cairn/test/model"
)

// leaseHistory runs lease reads against a leader that cannot step down: its
// Raft log hangs (so its leader loop stops) and a partition cuts it off,
// while the other two elect a new leader and take writes. The leader's lease
// clock runs rate times as fast as the machine's. It returns the history of
// one key: writes through the majority side, lease reads through the old
// leader.
func leaseHistory(t *testing.T, rate float64) []*model.Op {
	c := cluster.New(t, 3, cluster.Options{Configure: func(_ int, cfg *config.Config) { cfg.ReadMode = "lease" }})
	l := c.WaitLeader(10 * time.Second)
	other := (l + 1) % 3
	c.SetLeaseClockRate(l, rate)
	start := time.Now()
	var mu sync.Mutex
	var ops []*model.Op
	hc := &http.Client{}
	do := func(client, node int, kind model.Kind, value string, timeout time.Duration) {
		op := &model.Op{Client: client, Node: c.Nodes[node].Name, Kind: kind, Key: "lease/k", Value: value, Call: int64(time.Since(start))}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		url := "http://" + c.Nodes[node].ClientAddr + "/v1/kv/lease/k"
		method, body := http.MethodGet, io.Reader(nil)
		if kind == model.KindPut {
			method, body = http.MethodPut, strings.NewReader(value)
		}
		req, _ := http.NewRequestWithContext(ctx, method, url, body)
		resp, err := hc.Do(req)
		var got []byte
		if err == nil {
			got, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		op.Return = int64(time.Since(start))
		switch {
		case kind == model.KindPut && err == nil && resp.StatusCode/100 == 2:
			op.Outcome = model.OK
		case kind == model.KindPut:
			op.Outcome = model.Unknown
		case err == nil && resp.StatusCode == http.StatusOK:
			op.Outcome, op.Found, op.Got = model.OK, true, string(got)
		case err == nil && resp.StatusCode == http.StatusNotFound:
			op.Outcome = model.OK
		default:
			op.Outcome = model.Error
		}
		mu.Lock()
		ops = append(ops, op)
		mu.Unlock()
	}
	do(0, l, model.KindPut, "v0", 5*time.Second)
	raft := c.Hooks(l).Raft
	for deadline := time.Now().Add(10 * time.Second); !raft.LeaseHeld(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the leader never held a lease")
		}
	}
	c.StallLog(l, true)
	c.Partition(l)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); do(2, l, model.KindPut, "stuck", 4*time.Second) }() // stops the leader loop
	stop := time.Now().Add(3 * time.Second)
	go func() {
		defer wg.Done()
		for i := 1; time.Now().Before(stop); i++ {
			do(0, other, model.KindPut, fmt.Sprintf("v%d", i), 2*time.Second)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		for time.Now().Before(stop) {
			do(1, l, model.KindGet, "", 500*time.Millisecond)
			time.Sleep(10 * time.Millisecond)
		}
	}()
	wg.Wait()
	c.StallLog(l, false)
	c.Heal()
	end := int64(time.Since(start)) + 1
	for _, o := range ops {
		if o.Outcome == model.Unknown {
			o.Return = end
		}
	}
	return ops
}

// TestCheckerCatchesLeaseBeyondDrift proves the lease's clock bound is real
// and that the checker sees it broken: a leader whose lease clock runs ten
// times slow (far outside --lease-max-drift) believes its lease outlasts the
// election of its successor and serves stale lease reads; the checker must
// say the history is not linearizable.
func TestCheckerCatchesLeaseBeyondDrift(t *testing.T) {
	dir := harness.RunDir(t, false)
	ops := leaseHistory(t, 0.1)
	res := model.Check(ops, nil, time.Minute, dir)
	if res.Verdict != model.NotLinearizable {
		t.Fatalf("the checker accepted %d operations from a leader whose lease outlived its office (%s)", res.Ops, res.Verdict)
	}
	t.Logf("caught, as it must be: %d operations, keys %v not linearizable", res.Ops, res.BadKeys)
}

// TestLeaseWithinDriftIsLinearizable is the same run with the leader's lease
// clock 5% slow, inside the default 10% bound: its lease ends before anyone
// else can be elected, later reads fall back to the read index (which its
// stopped leader loop cannot answer), and the history is linearizable.
func TestLeaseWithinDriftIsLinearizable(t *testing.T) {
	dir := harness.RunDir(t, false)
	ops := leaseHistory(t, 1/1.05)
	reads := 0
	for _, o := range ops {
		if o.Kind == model.KindGet && o.Outcome == model.OK {
			reads++
		}
	}
	res := model.Check(ops, nil, time.Minute, dir)
	if res.Verdict != model.Linearizable {
		t.Fatalf("lease reads within the drift bound: %s (%d operations, keys %v)", res.Verdict, res.Ops, res.BadKeys)
	}
	t.Logf("linearizable: %d operations, %d reads answered", res.Ops, reads)
}

// TestLinearizableLeaseReads runs the harness's workload with lease reads
// (--read-mode lease) while each node's lease clock runs at a different rate
// inside the 10% bound (8% slow, true, 10% fast) and the leader or a
// follower is cut off or restarted: the history must be linearizable.
func TestLinearizableLeaseReads(t *testing.T) {
	if testing.Short() {
		t.Skip("fault-injection run")
	}
	dir := harness.RunDir(t, false)
	c := cluster.New(t, 3, cluster.Options{KeepLog: true, Configure: func(_ int, cfg *config.Config) {
		cfg.SnapshotEntries, cfg.TrailingLogs, cfg.SnapshotInterval = 256, 64, 200*time.Millisecond
		cfg.ReadMode = "lease"
	}})
	for i, rate := range []float64{0.92, 1, 1.1} {
		c.SetLeaseClockRate(i, rate)
	}
	w := inProcessWorkload
	w.Prefix, w.Seed = "lease/", 1
	harness.MustRun(t, c.Harness(), dir, harness.Config{Name: "lease reads, clock rates within the bound, in process", Workload: w,
		Faults:   []string{harness.FaultIsolateLeader, harness.FaultIsolateFollower, harness.FaultRestart},
		Duration: 8 * time.Second, Gap: 700 * time.Millisecond, Hold: 900 * time.Millisecond})
	var served uint64
	for i := range c.Nodes {
		if h := c.Hooks(i); h != nil && h.Raft != nil {
			served += h.Raft.LeaseReads()
		}
	}
	if served == 0 {
		t.Fatal("no read was served under a lease: the run did not test lease reads")
	}
	t.Logf("%d reads served under a lease", served)
}
