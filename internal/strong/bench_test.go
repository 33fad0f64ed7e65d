package strong

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/kv"
)

func BenchmarkEncodeCommand(b *testing.B) {
	t := kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: "bench/00001234", Value: make([]byte, 256)}}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := encodeCommand(command{Type: cmdTxn, Txn: &t}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeCommand(b *testing.B) {
	t := kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: "bench/00001234", Value: make([]byte, 256)}}}
	data, _ := encodeCommand(command{Type: cmdTxn, Txn: &t})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := decodeCommand(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMachineApply applies batches of 64 puts (what one Raft batch
// carries under load) over a 100,000-key space; ns/op is per put.
func BenchmarkMachineApply(b *testing.B) {
	m, db := mustMachine(b)
	val := make([]byte, 256)
	entries := make([]raftnode.Entry, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(entries) {
		for j := range entries {
			t := kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: fmt.Sprintf("k%06d", (i+j)*7919%100000), Value: val}}}
			data, _ := encodeCommand(command{Type: cmdTxn, Txn: &t})
			entries[j] = raftnode.Entry{Index: uint64(i + j + 1), Data: data}
		}
		batch := db.NewBatch()
		m.Apply(batch, entries)
		if err := batch.Commit(false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRecordCodec(b *testing.B) {
	r := &kv.Record{Key: "k", Value: make([]byte, 256), CreateRevision: 1 << 20, ModRevision: 1 << 21, Version: 7}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := decodeRecord("k", encodeRecord(r)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMachineApplySet64 applies one Raft batch of 64 single-key SET
// entries (what one batch carries under redis-benchmark -c 64), encoded
// beforehand; ns/op is Apply's per batch of 64 (the batch's commit, the
// memtable insert, is outside the timer: it is pebble's, not the machine's). The keys are spread over 100,000, as with
// redis-benchmark -r 100000. "ttl" is SET EX (the expiry index moves too).
func BenchmarkMachineApplySet64(b *testing.B) {
	for _, bc := range []struct {
		name string
		ttl  time.Duration
	}{{"plain", 0}, {"ttl", time.Minute}} {
		b.Run(bc.name, func(b *testing.B) {
			m, db := mustMachine(b)
			val := make([]byte, 256)
			const batches = 256
			all := make([][]raftnode.Entry, batches)
			rnd := rand.New(rand.NewPCG(1, 2))
			for i := range all {
				all[i] = make([]raftnode.Entry, 64)
				for j := range all[i] {
					t := kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: fmt.Sprintf("key:%012d", rnd.IntN(100000)), Value: val, TTL: bc.ttl}}}
					data, err := encodeCommand(command{Type: cmdTxn, Txn: &t, AuthChecked: true})
					if err != nil {
						b.Fatal(err)
					}
					all[i][j] = raftnode.Entry{Index: uint64(i*64 + j + 1), Time: int64(1e18), Data: data}
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				batch := db.NewBatch()
				m.Apply(batch, all[i%batches])
				b.StopTimer()
				if err := batch.Commit(false); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
