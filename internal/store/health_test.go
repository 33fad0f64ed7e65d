package store

import (
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"
)

// brokenDisk fails every write to a new sstable while broken is set, as a
// full disk does.
type brokenDisk struct{ broken atomic.Bool }

var errDiskFull = errors.New("no space left on device (injected)")

func (d *brokenDisk) MaybeError(op errorfs.Op, path string) error {
	if d.broken.Load() && strings.HasSuffix(path, ".sst") && op.OpKind() == errorfs.OpKindWrite {
		return errDiskFull
	}
	return nil
}

func openBroken(t *testing.T, onFail func(error)) (*DB, *brokenDisk, *time.Time) {
	t.Helper()
	disk := &brokenDisk{}
	dir := filepath.Join(t.TempDir(), "db")
	db, err := Open(dir, Options{DisableWAL: true, OnFail: onFail, fs: errorfs.Wrap(vfs.Default, disk)})
	if err != nil {
		t.Fatal(err)
	}
	// A clock the test moves, so FailAfter passes without waiting for it.
	clock := time.Now()
	db.health.mu.Lock()
	db.health.now = func() time.Time { return clock }
	db.health.mu.Unlock()
	return db, disk, &clock
}

// flushOnBrokenDisk commits a key, breaks the disk and starts a Flush,
// whose result comes on the channel returned.
func flushOnBrokenDisk(t *testing.T, db *DB, disk *brokenDisk) <-chan error {
	t.Helper()
	b := db.NewBatch()
	b.Set([]byte("k"), []byte("v"))
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	disk.broken.Store(true)
	done := make(chan error, 1)
	go func() { done <- db.Flush() }()
	return done
}

// TestFlushFailsWhenTheDiskDoes: a flush that cannot write its sstable
// returns the database's error once failures have lasted FailAfter, instead
// of waiting forever on pebble's retries; OnFail is told once, and Close
// does not hang.
func TestFlushFailsWhenTheDiskDoes(t *testing.T) {
	var told atomic.Int32
	var toldErr atomic.Value
	db, disk, clock := openBroken(t, func(err error) { told.Add(1); toldErr.Store(err) })
	// The failed pebble is left open (as Close documents): after the test,
	// let its retried flush succeed and close pebble itself, which waits
	// for that flush, before the directory is removed.
	t.Cleanup(func() {
		disk.broken.Store(false)
		_ = db.db.Close()
	})
	done := flushOnBrokenDisk(t, db, disk)
	// The flush fails and is retried; while under FailAfter, Flush waits.
	select {
	case err := <-done:
		t.Fatalf("Flush returned %v before the failures lasted FailAfter", err)
	case <-time.After(200 * time.Millisecond):
	}
	if db.Err() != nil {
		t.Fatalf("failed early: %v", db.Err())
	}
	db.health.mu.Lock()
	*clock = clock.Add(FailAfter)
	db.health.mu.Unlock()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Flush still waiting on a disk that keeps failing")
	}
	if !errors.Is(err, ErrFailed) || !errors.Is(err, errDiskFull) {
		t.Fatalf("Flush: %v, want ErrFailed wrapping the disk's error", err)
	}
	select {
	case <-db.Failed():
	default:
		t.Fatal("Failed not closed")
	}
	if n := told.Load(); n != 1 {
		t.Fatalf("OnFail called %d times, want 1", n)
	}
	if e, _ := toldErr.Load().(error); !errors.Is(e, ErrFailed) {
		t.Fatalf("OnFail got %v", e)
	}
	if err := db.Flush(); !errors.Is(err, ErrFailed) {
		t.Fatalf("second Flush: %v", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	select {
	case err := <-closed:
		if !errors.Is(err, ErrFailed) {
			t.Fatalf("Close: %v, want the failure", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close hangs on the failed database")
	}
}

// TestShortOutageDoesNotFail: flushes that fail for less than FailAfter and
// then succeed leave the database healthy, with the data flushed.
func TestShortOutageDoesNotFail(t *testing.T) {
	db, disk, _ := openBroken(t, func(err error) { t.Errorf("OnFail: %v", err) })
	defer db.Close()
	done := flushOnBrokenDisk(t, db, disk)
	time.Sleep(50 * time.Millisecond)
	disk.broken.Store(false)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Flush after the outage: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Flush did not finish after the disk recovered")
	}
	if db.Err() != nil {
		t.Fatalf("database failed after a short outage: %v", db.Err())
	}
	if got, err := db.Get([]byte("k")); err != nil || string(got) != "v" {
		t.Fatalf("Get after the outage: %q, %v", got, err)
	}
}
