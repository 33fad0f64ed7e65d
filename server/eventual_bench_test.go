package server_test

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnkv/cairn/config"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/test/cluster"
)

var (
	convergencePartition = flag.Duration("converge.partition", 30*time.Second, "how long BenchmarkEventualConvergence keeps the partition")
	convergenceAE        = flag.Duration("converge.ae", 5*time.Second, "the anti-entropy interval of BenchmarkEventualConvergence's nodes")
)

// BenchmarkEventualConvergence measures how long the replicas of an
// eventual keyspace (N=3, W=1) take to agree after a partition: one node is
// cut off for -converge.partition while writers on both sides keep writing
// a shared set of keys, then the partition heals, the writers stop, and the
// clock runs until every node's own copy of every key has the same version.
// It reports converge-s (after the heal), keys and writes. Run it once:
//
//	go test -run '^$' -bench EventualConvergence -benchtime 1x ./server
func BenchmarkEventualConvergence(b *testing.B) {
	for range b.N {
		c := cluster.New(b, 3, cluster.Options{Configure: func(_ int, cfg *config.Config) {
			cfg.AntiEntropyInterval = *convergenceAE
		}})
		ctx := context.Background()
		if _, err := c.Svc(0).PutKeyspace(ctx, keyspace.Policy{Prefix: "ev/", Mode: keyspace.Eventual, Replicas: 3, WriteQuorum: 1, ReadQuorum: 1, SloppyQuorum: true}); err != nil {
			b.Fatal(err)
		}
		const keys = 2000
		c.Partition(0)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var writes [3]int
		for side, node := range []int{0, 1, 2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					k := fmt.Sprintf("ev/%04d", (i*7+side*13)%keys)
					if _, err := c.Svc(node).Put(ctx, k, fmt.Appendf(nil, "%d-%d", node, i), kv.PutOptions{}); err == nil {
						writes[side]++
					}
				}
			}()
		}
		time.Sleep(*convergencePartition)
		close(stop)
		wg.Wait()
		c.Heal()
		healed := time.Now()
		for {
			if eventualAgree(c, keys) {
				break
			}
			if time.Since(healed) > 10**convergenceAE+time.Minute {
				b.Fatal("the replicas did not converge")
			}
			time.Sleep(100 * time.Millisecond)
		}
		b.ReportMetric(time.Since(healed).Seconds(), "converge-s")
		b.ReportMetric(keys, "keys")
		b.ReportMetric(float64(writes[0]+writes[1]+writes[2]), "writes")
		c.Close()
	}
}

// eventualAgree reports whether every node holds the same version of each
// of the keys ev/0000… (or none of them does).
func eventualAgree(c *cluster.Cluster, keys int) bool {
	ctx := context.Background()
	for k := range keys {
		key := fmt.Sprintf("ev/%04d", k)
		var first string
		for i := range 3 {
			r, err := c.Svc(i).Get(ctx, key, kv.ReadOptions{Local: true})
			v := "absent"
			if err == nil {
				v = r.Timestamp + r.Origin
			}
			if i == 0 {
				first = v
			} else if v != first {
				return false
			}
		}
	}
	return true
}

// BenchmarkEventualServicePut is BenchmarkServicePut for an eventual
// keyspace (N=3) at W=1 and W=2: replicated writes through the kv service
// of a 3-node in-process cluster, without a front end.
func BenchmarkEventualServicePut(b *testing.B) {
	for _, w := range []int{1, 2} {
		b.Run(fmt.Sprintf("w=%d", w), func(b *testing.B) {
			c := cluster.New(b, 3, cluster.Options{})
			s := c.Svc(c.WaitLeader(5e9))
			if _, err := s.PutKeyspace(context.Background(), keyspace.Policy{Prefix: "ev/", Mode: keyspace.Eventual, Replicas: 3, WriteQuorum: w, ReadQuorum: 1, SloppyQuorum: true}); err != nil {
				b.Fatal(err)
			}
			val := make([]byte, 256)
			var n atomic.Int64
			b.SetParallelism(32) // 64 writers on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					k := fmt.Sprintf("ev/k%06d", n.Add(1)%100000)
					if _, err := s.Put(context.Background(), k, val, kv.PutOptions{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
