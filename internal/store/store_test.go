package store

import (
	"errors"
	"testing"
)

// TestDisableWAL checks what a database without a WAL keeps across a close
// that does not flush (what a crash leaves): only batches before the last
// Flush or Sync, each whole.
func TestDisableWAL(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{DisableWAL: true})
	if err != nil {
		t.Fatal(err)
	}
	if !db.WALDisabled() {
		t.Fatal("WALDisabled is false")
	}
	commit := func(keys ...string) {
		t.Helper()
		b := db.NewBatch()
		for _, k := range keys {
			b.Set([]byte(k), []byte(k))
		}
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
	}
	commit("a1", "a2")
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	commit("b1", "b2")
	if err := db.Sync(); err != nil { // a flush, without a WAL
		t.Fatal(err)
	}
	commit("c1", "c2") // never flushed
	b := db.NewBatch()
	b.Set([]byte("d"), []byte("d"))
	if err := b.Commit(true); err == nil {
		t.Fatal("a synced commit succeeded without a WAL")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	if db, err = Open(dir, Options{DisableWAL: true}); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, k := range []string{"a1", "a2", "b1", "b2"} {
		if _, err := db.Get([]byte(k)); err != nil {
			t.Errorf("%s after reopening: %v", k, err)
		}
	}
	for _, k := range []string{"c1", "c2", "d"} {
		if _, err := db.Get([]byte(k)); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s survived a close without a flush: %v", k, err)
		}
	}
}
