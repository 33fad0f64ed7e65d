// Package store is cairn's local storage engine: a thin layer over pebble that
// every other component (the Raft log, the state machines, later hints and
// anti-entropy trees) uses. It deals in bytes; what the bytes mean belongs to
// the package that writes them.
//
// Durability is chosen per write: Commit(true) syncs the write-ahead log before
// returning, Commit(false) does not. The Raft log is written synced. A
// database whose contents another log already holds (the strong engine's
// state, rebuilt from the Raft log) can go without a write-ahead log at all
// (Options.DisableWAL): its writes then reach the disk only when a memtable
// is flushed, whole batches at a time.
package store

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
)

// ErrNotFound is returned by Get when the key does not exist.
var ErrNotFound = errors.New("store: not found")

// DB is one pebble database.
type DB struct {
	db    *pebble.DB
	noWAL bool
	// closed is set by Close: a metrics scrape that races with shutdown
	// skips the database instead of asking a closed pebble (which panics).
	closed atomic.Bool
	health *health
}

// Options tune a DB.
type Options struct {
	Logger *slog.Logger
	// CacheBytes is the block cache size; 0 picks a default.
	CacheBytes int64
	// MemTableBytes is the size of one memtable; 0 picks DefaultMemTableBytes.
	MemTableBytes uint64
	// NoCompression writes sstable blocks uncompressed: for data that is
	// deleted soon after it is written (the Raft log), where compressing
	// costs CPU and, for a large value, a compressed copy of it in memory
	// for nothing.
	NoCompression bool
	// DisableWAL writes no write-ahead log: a committed batch is only in
	// memory until its memtable is flushed (when it fills, or on Flush and
	// Sync), and a crash loses every batch after the last flush — whole
	// batches, newest first, never part of one. Only for a database
	// that another durable log can rebuild; Commit(true) fails on it.
	DisableWAL bool
	// OnFail, when set, is called once if the database fails, before
	// DB.Failed is closed and DB.Err is set (so whoever sees the failure
	// knows the owner was told), from one of pebble's goroutines; it must
	// not block.
	OnFail func(error)

	fs vfs.FS // tests: the file system under the database (default: the OS's)
}

// DefaultMemTableBytes is the memtable size unless Options say otherwise.
// A memtable is a skiplist in one arena, so a point read or an insert is a
// chain of random accesses across it: at 32 MiB each step missed the CPU
// caches and TLB and a Get cost 4x what it does at 8 MiB (BenchmarkGet),
// while flushed data is found through bloom filters and the block cache.
const DefaultMemTableBytes = 8 << 20

// Open opens (creating if needed) the database in dir.
func Open(dir string, o Options) (*DB, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cacheBytes := o.CacheBytes
	if cacheBytes <= 0 {
		cacheBytes = 64 << 20
	}
	memTable := o.MemTableBytes
	if memTable == 0 {
		memTable = DefaultMemTableBytes
	}
	cache := pebble.NewCache(cacheBytes)
	defer cache.Unref()
	h := newHealth(o.OnFail)
	events := h.listener()
	opts := &pebble.Options{
		Cache:                       cache,
		EventListener:               events,
		Logger:                      pebbleLogger{logger},
		MemTableSize:                memTable,
		MemTableStopWritesThreshold: 4,
		// Twice pebble's default of L0 files before they are compacted into
		// the level below. Keys are written all over the key space, so an
		// L0 compaction rewrites most of that level whatever it merges:
		// merging 8 flushed memtables at a time instead of 4 rewrote the
		// state a quarter less often and cut the compaction CPU of a
		// replicated write by about 25 % (docs/BENCHMARKS.md, "Performance
		// round 3"). Point reads pay a bloom-filter check per extra L0
		// file; the record cache answers most of them first.
		L0CompactionThreshold:    8,
		L0StopWritesThreshold:    24,
		MaxConcurrentCompactions: func() int { return 2 },
		DisableWAL:               o.DisableWAL,
		FS:                       o.fs,
	}
	if o.NoCompression {
		opts.Levels = make([]pebble.LevelOptions, 7)
		for i := range opts.Levels {
			opts.Levels[i].Compression = pebble.NoCompression
		}
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	return &DB{db: db, noWAL: o.DisableWAL, health: h}, nil
}

// Close closes the database. It flushes nothing: on a database without a
// write-ahead log, what was committed since the last Flush is gone, exactly
// as after a crash (call Flush first to keep it).
//
// Closing a failed database (see Failed) only marks it closed: pebble's
// Close would wait for the flush it retries forever. Its files stay open
// until the process exits, which is what a node whose disk failed does next.
func (d *DB) Close() error {
	d.closed.Store(true)
	if err := d.Err(); err != nil {
		return err
	}
	return d.db.Close()
}

// Closed reports whether Close has been called.
func (d *DB) Closed() bool { return d.closed.Load() }

// Get returns a copy of the value at key, or ErrNotFound.
func (d *DB) Get(key []byte) ([]byte, error) { return get(d.db, key) }

type getter interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

func get(g getter, key []byte) ([]byte, error) {
	v, closer, err := g.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: get: %w", err)
	}
	out := make([]byte, len(v))
	copy(out, v)
	_ = closer.Close()
	return out, nil
}

// View calls fn with the value at key, without copying it: the slice is
// valid only during the call (for reading a large value's header alone).
// It returns ErrNotFound when the key does not exist.
func (d *DB) View(key []byte, fn func(value []byte) error) error {
	v, closer, err := d.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("store: get: %w", err)
	}
	defer closer.Close()
	return fn(v)
}

// Sync makes every write committed so far durable: it syncs the
// write-ahead log or, on a database without one, flushes the memtables.
func (d *DB) Sync() error {
	if d.noWAL {
		return d.Flush()
	}
	if err := d.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("store: sync: %w", err)
	}
	return nil
}

// Flush writes every memtable to sstables and waits until they are durable
// (pebble syncs the tables and the manifest that names them). Batches are
// never split between memtables, so what a flush keeps is every batch
// committed before it, whole.
//
// A flush that cannot finish because the disk fails (see Failed) returns
// the database's error instead of waiting forever.
func (d *DB) Flush() error {
	if err := d.Err(); err != nil {
		return err
	}
	flushed, err := d.db.AsyncFlush()
	if err != nil {
		return fmt.Errorf("store: flush: %w", err)
	}
	select {
	case <-flushed:
		return nil
	case <-d.health.failed:
		return d.Err()
	}
}

// WALDisabled reports whether the database writes no write-ahead log.
func (d *DB) WALDisabled() bool { return d.noWAL }

// Scan calls fn for every key in [lower, upper) in order until fn returns false.
// A nil upper means no bound. The slices passed to fn are only valid during the call.
func (d *DB) Scan(lower, upper []byte, fn func(key, value []byte) bool) error {
	return scan(d.db, lower, upper, fn)
}

type iterSource interface {
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

func scan(src iterSource, lower, upper []byte, fn func(key, value []byte) bool) error {
	it, err := src.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("store: iterate: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if !fn(it.Key(), it.Value()) {
			break
		}
	}
	if err := it.Error(); err != nil {
		_ = it.Close()
		return fmt.Errorf("store: iterate: %w", err)
	}
	return it.Close()
}

// Last returns a copy of the last key in [lower, upper), or ErrNotFound.
func (d *DB) Last(lower, upper []byte) (key, value []byte, err error) {
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, nil, fmt.Errorf("store: iterate: %w", err)
	}
	defer it.Close()
	if !it.Last() {
		if err := it.Error(); err != nil {
			return nil, nil, fmt.Errorf("store: iterate: %w", err)
		}
		return nil, nil, ErrNotFound
	}
	return append([]byte(nil), it.Key()...), append([]byte(nil), it.Value()...), nil
}

// First returns a copy of the first key in [lower, upper), or ErrNotFound.
func (d *DB) First(lower, upper []byte) (key, value []byte, err error) {
	err = d.Scan(lower, upper, func(k, v []byte) bool {
		key, value = append([]byte(nil), k...), append([]byte(nil), v...)
		return false
	})
	if err == nil && key == nil {
		err = ErrNotFound
	}
	return key, value, err
}

// DeleteRange removes every key in [start, end), durably when sync is set.
func (d *DB) DeleteRange(start, end []byte, sync bool) error {
	if err := d.db.DeleteRange(start, end, writeOpts(sync)); err != nil {
		return fmt.Errorf("store: delete range: %w", err)
	}
	return nil
}

// Snapshot is a consistent read-only view of the database at one moment.
type Snapshot struct{ s *pebble.Snapshot }

// NewSnapshot returns a view that later writes do not change. Close it.
func (d *DB) NewSnapshot() *Snapshot { return &Snapshot{s: d.db.NewSnapshot()} }

// Get returns a copy of the value at key in the snapshot, or ErrNotFound.
func (s *Snapshot) Get(key []byte) ([]byte, error) { return get(s.s, key) }

// Scan is DB.Scan on the snapshot.
func (s *Snapshot) Scan(lower, upper []byte, fn func(key, value []byte) bool) error {
	return scan(s.s, lower, upper, fn)
}

// Close releases the snapshot.
func (s *Snapshot) Close() error { return s.s.Close() }

// Batch collects writes that commit atomically.
type Batch struct {
	b  *pebble.Batch
	db *DB
}

// NewBatch starts an empty batch.
func (d *DB) NewBatch() *Batch { return &Batch{b: d.db.NewBatch(), db: d} }

// NewBatchSize starts an empty batch with room for about n bytes of keys
// and values, so a batch carrying a large value is allocated once instead of
// grown by doubling (a 50 MiB value would otherwise leave a 64 MiB buffer
// and 64 MiB of smaller ones behind).
func (d *DB) NewBatchSize(n int) *Batch {
	// pebble sizes a batch's buffer in powers of two when its first record
	// goes in, and allocates again if the buffer is smaller: a buffer of
	// exactly n would be thrown away.
	size := 1 << 10
	for size < n+batchOverhead {
		size *= 2
	}
	return &Batch{b: d.db.NewBatchWithSize(size), db: d}
}

// batchOverhead is room for the batch header and a few records' tags.
const batchOverhead = 256

// Set records key=value in the batch.
func (b *Batch) Set(key, value []byte) { _ = b.b.Set(key, value, nil) }

// SetBuffer records key with a value of n bytes and returns the value's
// bytes inside the batch, for the caller to fill in before Commit: a large
// value is encoded in place rather than built and then copied.
func (b *Batch) SetBuffer(key []byte, n int) []byte {
	op := b.b.SetDeferred(len(key), n)
	copy(op.Key, key)
	_ = op.Finish()
	return op.Value
}

// Delete records the removal of key in the batch.
func (b *Batch) Delete(key []byte) { _ = b.b.Delete(key, nil) }

// DeleteRange records the removal of [start, end) in the batch.
func (b *Batch) DeleteRange(start, end []byte) { _ = b.b.DeleteRange(start, end, nil) }

// Len is the size of the batch in bytes.
func (b *Batch) Len() int { return b.b.Len() }

// Empty reports whether the batch holds no writes.
func (b *Batch) Empty() bool { return b.b.Empty() }

// Commit applies the batch atomically; with sync it is durable on return.
// The batch cannot be used afterwards.
func (b *Batch) Commit(sync bool) error {
	err := b.b.Commit(writeOpts(sync))
	_ = b.b.Close()
	if err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// Close discards an uncommitted batch.
func (b *Batch) Close() { _ = b.b.Close() }

func writeOpts(sync bool) *pebble.WriteOptions {
	if sync {
		return pebble.Sync
	}
	return pebble.NoSync
}

// PrefixEnd returns the smallest key greater than every key with the prefix,
// or nil when there is none (the prefix is all 0xff).
func PrefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "subsystem", "pebble")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "subsystem", "pebble")
}

// Fatalf is called by pebble on unrecoverable corruption; pebble expects it not to return.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "subsystem", "pebble")
	panic(fmt.Sprintf(format, args...))
}
