package raftnode

import (
	"path/filepath"
	"testing"

	"github.com/cairnkv/cairn/internal/store"
	"github.com/hashicorp/raft"
)

// TestLogFlushDropsCompactedEntries: entries deleted behind a snapshot while
// still in the memtable never reach an sstable, which is what the log
// database's large memtable (logMemTableBytes) is for.
func TestLogFlushDropsCompactedEntries(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "raft"), logDBOptions(nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	logs, err := NewLogStore(db)
	if err != nil {
		t.Fatal(err)
	}
	const n, keep, size = 20000, 2000, 300
	batch := make([]*raft.Log, 0, 100)
	for i := uint64(1); i <= n; i++ {
		batch = append(batch, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: make([]byte, size)})
		if len(batch) == cap(batch) {
			if err := logs.StoreLogs(batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := logs.DeleteRange(1, n-keep); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, most := db.SSTableBytes(), int64(2*keep*size); got > most {
		t.Fatalf("sstables hold %d bytes after the flush; the %d live entries are %d", got, keep, keep*size)
	}
	if first, _ := logs.FirstIndex(); first != n-keep+1 {
		t.Fatalf("first index %d, want %d", first, n-keep+1)
	}
	var l raft.Log
	if err := logs.GetLog(n, &l); err != nil || len(l.Data) != size {
		t.Fatalf("last entry after the flush: %v, %d bytes", err, len(l.Data))
	}
}
