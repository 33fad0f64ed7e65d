package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchKey is a state-machine-like key: a prefix byte, "bench/", 8 bytes.
func benchKey(i int) []byte {
	k := []byte{1, 'b', 'e', 'n', 'c', 'h', '/', 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint64(k[7:], uint64(i))
	return k
}

// mustLoaded opens a DB with the given memtable size and writes 300,000
// 300-byte records over a 100,000-key space, as the RESP SET benchmarks do.
func mustLoaded(b *testing.B, memTable uint64) *DB {
	b.Helper()
	db, err := Open(b.TempDir(), Options{MemTableBytes: memTable})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	val := make([]byte, 300)
	for i := 0; i < 300000; i++ {
		bt := db.NewBatch()
		bt.Set(benchKey(rand.IntN(100000)), val)
		if err := bt.Commit(false); err != nil {
			b.Fatal(err)
		}
	}
	return db
}

var memTableSizes = []uint64{4 << 20, DefaultMemTableBytes, 32 << 20}

// BenchmarkGet reads random keys of a loaded DB, for several memtable sizes.
func BenchmarkGet(b *testing.B) {
	for _, mt := range memTableSizes {
		b.Run(fmt.Sprintf("memtable=%dMiB", mt>>20), func(b *testing.B) {
			db := mustLoaded(b, mt)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := db.Get(benchKey(rand.IntN(100000))); err != nil && !errors.Is(err, ErrNotFound) {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBatchCommit commits unsynced batches of 16 random 300-byte puts
// (a pipelined client's group); ns/op is per batch.
func BenchmarkBatchCommit(b *testing.B) {
	for _, mt := range memTableSizes {
		b.Run(fmt.Sprintf("memtable=%dMiB", mt>>20), func(b *testing.B) {
			db := mustLoaded(b, mt)
			val := make([]byte, 300)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				bt := db.NewBatch()
				for j := 0; j < 16; j++ {
					bt.Set(benchKey(rand.IntN(100000)), val)
				}
				if err := bt.Commit(false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
