package strong

import (
	"fmt"
	"testing"

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
