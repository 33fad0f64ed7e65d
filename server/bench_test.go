package server_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/test/cluster"
)

// BenchmarkServicePut measures replicated writes through the kv service of a
// 3-node in-process cluster (the front ends add their own cost on top).
func BenchmarkServicePut(b *testing.B) {
	c := cluster.New(b, 3, cluster.Options{})
	s := c.Svc(c.WaitLeader(5e9))
	val := make([]byte, 256)
	var n atomic.Int64
	b.SetParallelism(32) // 64 writers on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := fmt.Sprintf("k%06d", n.Add(1)%100000)
			if _, err := s.Put(context.Background(), k, val, kv.PutOptions{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkServiceGet measures linearizable reads on the leader.
func BenchmarkServiceGet(b *testing.B) {
	c := cluster.New(b, 3, cluster.Options{})
	s := c.Svc(c.WaitLeader(5e9))
	for i := 0; i < 1000; i++ {
		if _, err := s.Put(context.Background(), fmt.Sprintf("k%06d", i), make([]byte, 256), kv.PutOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := fmt.Sprintf("k%06d", n.Add(1)%1000)
			if _, err := s.Get(context.Background(), k, kv.ReadOptions{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
