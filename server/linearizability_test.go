package server_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/test/cluster"
	"github.com/cairnkv/cairn/test/lincheck"
)

// TestLinearizableUnderPartitions drives concurrent clients through every
// node (writes forwarded by followers, reads through the read index) while
// the leader or a follower is repeatedly cut off, and checks the history
// with porcupine.
func TestLinearizableUnderPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("fault-injection run")
	}
	c := cluster.New(t, 3, cluster.Options{})
	res, path := checkUnderFaults(t, c, []string{"partition-leader", "partition-follower"}, 8*time.Second, 1)
	if res != porcupine.Ok {
		t.Fatalf("history is %s; visualization: %s", res, path)
	}
}

// checkUnderPartitions is the run TestCheckerCatchesStaleReads uses.
func checkUnderPartitions(t *testing.T, c *cluster.Cluster, d time.Duration) (porcupine.CheckResult, string) {
	return checkUnderFaults(t, c, []string{"partition-leader", "partition-follower"}, d, 1)
}

// A fault starts when called and returns the function that ends it.
type fault func(t *testing.T, c *cluster.Cluster, rng *rand.Rand) (heal func())

func randomFollower(c *cluster.Cluster, rng *rand.Rand) int {
	l := c.Leader()
	for {
		i := rng.IntN(len(c.Nodes))
		if i != l && c.Running(i) != nil {
			return i
		}
	}
}

// faults are the nemesis's kinds, each on its own; a run may mix several.
var faults = map[string]fault{
	"partition-leader": func(t *testing.T, c *cluster.Cluster, rng *rand.Rand) func() {
		if l := c.Leader(); l >= 0 {
			c.Partition(l)
		}
		return c.Heal
	},
	"partition-follower": func(t *testing.T, c *cluster.Cluster, rng *rand.Rand) func() {
		c.Partition(randomFollower(c, rng))
		return c.Heal
	},
	// majority/minority split that leaves the leader on the minority side.
	"split": func(t *testing.T, c *cluster.Cluster, rng *rand.Rand) func() {
		minority := []int{}
		if l := c.Leader(); l >= 0 {
			minority = append(minority, l)
		}
		for len(minority) < (len(c.Nodes)-1)/2 {
			if f := randomFollower(c, rng); !containsInt(minority, f) {
				minority = append(minority, f)
			}
		}
		c.Partition(minority...)
		return c.Heal
	},
	// one-way: the leader cannot reach a follower, which can still reach it.
	"one-way": func(t *testing.T, c *cluster.Cluster, rng *rand.Rand) func() {
		l := c.Leader()
		if f := c.Faults(max(l, 0)); l >= 0 && f != nil {
			f.Block(c.Nodes[randomFollower(c, rng)].PeerAddr)
		}
		return c.Heal
	},
	"latency": func(t *testing.T, c *cluster.Cluster, rng *rand.Rand) func() {
		for i := range c.Nodes {
			if f := c.Faults(i); f != nil {
				for _, n := range c.Nodes {
					f.Delay(n.PeerAddr, time.Duration(20+rng.IntN(60))*time.Millisecond)
				}
			}
		}
		return c.Heal
	},
	"restart": func(t *testing.T, c *cluster.Cluster, rng *rand.Rand) func() {
		i := rng.IntN(len(c.Nodes))
		if l := c.Leader(); rng.IntN(2) == 0 && l >= 0 {
			i = l
		}
		c.Stop(i)
		return func() { c.Start(i) }
	},
	"transfer": func(t *testing.T, c *cluster.Cluster, rng *rand.Rand) func() {
		if l := c.Leader(); l >= 0 {
			to := c.Nodes[randomFollower(c, rng)].Name
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_ = c.Running(l).Service().TransferLeadership(ctx, to)
			cancel()
		}
		return func() {}
	},
	// remove a follower, wipe it, and add it back as a learner that is
	// promoted to voter once it has caught up.
	"learner": func(t *testing.T, c *cluster.Cluster, rng *rand.Rand) func() {
		l := c.Leader()
		if l < 0 {
			return func() {}
		}
		f := randomFollower(c, rng)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := c.Running(l).Service().RemoveMember(ctx, c.Nodes[f].Name); err != nil {
			t.Logf("remove %s: %v", c.Nodes[f].Name, err)
			return func() {}
		}
		c.Stop(f)
		return func() {
			c.RejoinAsLearner(f, l)
			for try := 0; try < 50; try++ {
				if s := c.Running(f); s != nil {
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					err := s.Service().PromoteMember(ctx, c.Nodes[f].Name)
					cancel()
					if err == nil {
						return
					}
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Logf("could not promote %s", c.Nodes[f].Name)
		}
	},
	// remove a follower, wipe it, and add it back as a new member.
	"membership": func(t *testing.T, c *cluster.Cluster, rng *rand.Rand) func() {
		l := c.Leader()
		if l < 0 {
			return func() {}
		}
		f := randomFollower(c, rng)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := c.Running(l).Service().RemoveMember(ctx, c.Nodes[f].Name); err != nil {
			t.Logf("remove %s: %v", c.Nodes[f].Name, err)
			return func() {}
		}
		c.Stop(f)
		return func() { c.Rejoin(f, l) }
	},
}

func containsInt(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// checkUnderFaults runs the workload for d while the nemesis injects the
// given fault kinds in turn (seeded), heals, waits for convergence, and checks
// the history; on a violation it writes porcupine's visualization and returns its path.
func checkUnderFaults(t *testing.T, c *cluster.Cluster, kinds []string, duration time.Duration, seed uint64) (porcupine.CheckResult, string) {
	const clients, keys = 6, 3
	start := time.Now()
	h := lincheck.NewHistory()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for cl := 0; cl < clients; cl++ {
		wg.Add(1)
		go func(cl int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(cl), seed))
			lastSeen := map[string]string{}
			// Serializable reads from one node must never go back in time.
			sticky := cl % len(c.Nodes)
			lastRev := map[string]int64{}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("lin/%d", rng.IntN(keys))
				if rng.IntN(10) == 0 {
					if s := c.Running(sticky); s != nil {
						if r, err := s.Service().Get(context.Background(), key, kv.ReadOptions{Serializable: true}); err == nil {
							if r.ModRevision < lastRev[key] {
								t.Errorf("serializable read of %s on %s went back from revision %d to %d", key, c.Nodes[sticky].Name, lastRev[key], r.ModRevision)
							}
							lastRev[key] = r.ModRevision
						}
					}
					continue
				}
				s := c.Running(rng.IntN(len(c.Nodes)))
				if s == nil {
					continue
				}
				svc := s.Service()
				in := lincheck.Input{Key: key, Value: fmt.Sprintf("c%d-%d", cl, n)}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				call := h.Now()
				var out lincheck.Output
				var err error
				switch p := rng.IntN(100); {
				case p < 40:
					in.Op = "get"
					var r *kv.Record
					r, err = svc.Get(ctx, key, kv.ReadOptions{})
					if err == nil {
						out.Value = string(r.Value)
					} else if errors.Is(err, kv.ErrKeyNotFound) {
						err = nil
					}
					if err == nil {
						lastSeen[key] = out.Value
					}
				case p < 80:
					in.Op = "put"
					_, err = svc.Put(ctx, key, []byte(in.Value), kv.PutOptions{})
				default:
					in.Op, in.Expected = "cas", lastSeen[key]
					t := kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: key, Value: []byte(in.Value)}}}
					if in.Expected == "" {
						t.Compare = []kv.Compare{{Key: key, Target: kv.TargetExists, Op: "=", Exists: false}}
					} else {
						t.Compare = []kv.Compare{{Key: key, Target: kv.TargetValue, Op: "=", Value: []byte(in.Expected)}}
					}
					var res *kv.TxnResult
					res, err = svc.Txn(ctx, t)
					if err == nil {
						out.OK = res.Succeeded
					}
				}
				cancel()
				if err != nil {
					// Back off as a client would: a node cut off from the
					// leader fails fast, and a client retrying at once
					// would fill the history with thousands of unknown
					// writes, each of which porcupine must keep open to
					// the end (the check then runs out of time).
					time.Sleep(100 * time.Millisecond)
					if in.Op == "get" {
						continue // a failed read has no effect
					}
					out.Unknown = true
				}
				h.Add(cl, in, call, out)
			}
		}(cl)
	}
	rng := rand.New(rand.NewPCG(seed, 99))
	var injected []string
	for i := 0; time.Since(start) < duration; i++ {
		time.Sleep(700 * time.Millisecond)
		kind := kinds[i%len(kinds)]
		heal := faults[kind](t, c, rng)
		injected = append(injected, fmt.Sprintf("%s@%.1fs", kind, time.Since(start).Seconds()))
		time.Sleep(900 * time.Millisecond)
		heal()
	}
	close(stop)
	wg.Wait()
	c.Heal()
	c.WaitReady(30 * time.Second)
	c.WaitConverged(30 * time.Second)

	// The check is CPU-bound; a busy 2-core machine needs more than a minute
	// for the longest histories (a timeout is Unknown, a failure here).
	res, path := h.Check(150 * time.Second)
	ok, unknown := h.Counts()
	t.Logf("%d operations (%d with unknown outcome); faults %v: %s", ok+unknown, unknown, injected, res)
	if ok < 100 {
		t.Fatalf("only %d operations completed: the cluster did not make progress", ok)
	}
	return res, path
}
