package raftnode

import (
	"path/filepath"
	"testing"

	"github.com/cairnkv/cairn/internal/store"
	"github.com/hashicorp/raft"
)

// TestLogCacheKeepsOnlySmallEntries: a large entry is served from the store,
// never from memory, and the slot it took holds no stale entry.
func TestLogCacheKeepsOnlySmallEntries(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "raft"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	logs, err := NewLogStore(db)
	if err != nil {
		t.Fatal(err)
	}
	c := newLogCache(logs)
	small := &raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("small")}
	big := &raft.Log{Index: 1 + logCacheEntries, Term: 2, Type: raft.LogCommand, Data: make([]byte, maxCachedEntry+1)}
	big.Data[0] = 7
	if err := c.StoreLogs([]*raft.Log{small}); err != nil {
		t.Fatal(err)
	}
	if c.ring[1] != small {
		t.Fatal("the small entry is not cached")
	}
	if err := c.StoreLogs([]*raft.Log{big}); err != nil {
		t.Fatal(err)
	}
	if c.ring[1] != nil {
		t.Fatal("the large entry's slot still holds an entry")
	}
	if len(c.large) != 1 {
		t.Fatal("the newest large entry is not kept")
	}
	var tail []*raft.Log
	for i := range uint64(recentLarge) {
		tail = append(tail, &raft.Log{Index: big.Index + 1 + i, Term: 2, Type: raft.LogCommand})
	}
	if err := c.StoreLogs(tail); err != nil {
		t.Fatal(err)
	}
	if len(c.large) != 0 {
		t.Fatalf("%d large entries kept %d entries after them", len(c.large), recentLarge)
	}
	var out raft.Log
	if err := c.GetLog(big.Index, &out); err != nil || out.Term != 2 || len(out.Data) != len(big.Data) || out.Data[0] != 7 {
		t.Fatalf("large entry read back: %v term %d, %d bytes", err, out.Term, len(out.Data))
	}
	if err := c.GetLog(1, &out); err != nil || string(out.Data) != "small" {
		t.Fatalf("small entry read back: %v %q", err, out.Data)
	}
}
