package raftnode

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/peer"
	"github.com/cairnkv/cairn/internal/store"
)

// startNoWAL starts a single-node cluster over a state database without a
// WAL, as the strong engine runs it, with a short trailing log so every
// snapshot compacts the log behind it. stop closes the node and then the
// state database without flushing it: what survives is what a kill -9
// leaves, the state as of its last flush.
func startNoWAL(t *testing.T, dir string) (*Node, *counter, *store.DB, func()) {
	t.Helper()
	db, err := store.Open(filepath.Join(dir, "state"), store.Options{DisableWAL: true})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := peer.NewMux(ln, nil, nil, nil)
	go mux.Serve()
	c := &counter{db: db}
	n, err := Start(Config{
		ID: "solo", Dir: dir, AdvertiseAddr: ln.Addr().String(), Mux: mux, Dialer: &peer.Dialer{},
		StateDB: db, StateMachine: c, Bootstrap: []Peer{{ID: "solo", Addr: ln.Addr().String()}},
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		SnapshotEntries: 1 << 20, SnapshotInterval: time.Hour, TrailingLogs: 5,
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, c, db, func() { n.Close(); mux.Close(); db.Close() }
}

func mustPropose(t *testing.T, n *Node, times int) uint64 {
	t.Helper()
	var total uint64
	for i := 0; i < times; i++ {
		out, err := n.Propose(context.Background(), []byte{1})
		if err != nil {
			t.Fatal(err)
		}
		total = binary.BigEndian.Uint64(out)
	}
	return total
}

// TestNoWALCrashReplays loses the state database's unflushed memtable (no
// WAL: everything after the last flush) after snapshots that compacted the
// log, and checks that the restart replays exactly what was lost: every
// acknowledged command is there once. The state on disk must be the one
// the last snapshot flushed — not older (the log behind it is gone), which
// is what makes the replay possible at all.
func TestNoWALCrashReplays(t *testing.T) {
	dir := t.TempDir()
	n, c, _, stop := startNoWAL(t, dir)
	waitLeader(t, n)
	var atSnapshot uint64
	for round := 0; round < 3; round++ {
		atSnapshot = mustPropose(t, n, 200)
		if err := n.Snapshot(); err != nil {
			t.Fatal(err)
		}
	}
	first, _ := n.logs.FirstIndex()
	snapIdx := n.fsm.applied.Load()
	if first <= 1 || first > snapIdx {
		t.Fatalf("log starts at %d after snapshots up to %d: not compacted", first, snapIdx)
	}
	if got := mustPropose(t, n, 150); got != atSnapshot+150 || c.total() != got {
		t.Fatalf("total %d (state %d), want %d", got, c.total(), atSnapshot+150)
	}
	stop() // the memtable with the last 150 commands is lost

	db, err := store.Open(filepath.Join(dir, "state"), store.Options{DisableWAL: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := (&counter{db: db}).total(); got != atSnapshot {
		t.Fatalf("state on disk after the crash has total %d, want %d (as of the last snapshot's flush)", got, atSnapshot)
	}
	db.Close()

	n, c, _, stop = startNoWAL(t, dir)
	defer stop()
	waitLeader(t, n)
	if err := n.ReadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.total() != atSnapshot+150 {
		t.Fatalf("total after the restart %d, want %d: the replay lost or repeated commands", c.total(), atSnapshot+150)
	}
	if got := mustPropose(t, n, 1); got != atSnapshot+151 {
		t.Fatalf("propose after the restart: total %d, want %d", got, atSnapshot+151)
	}
}

// failingReader yields its data, then an error.
type failingReader struct{ r io.Reader }

func (f failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

func (failingReader) Close() error { return nil }

// TestRestoreCutShortHasNoAppliedIndex checks that a restore that stops
// midway (a crash, a broken stream) never leaves the state database
// claiming the snapshot's applied index over part of its state: flushed
// memtables can hold any prefix of a restore's batches, so the applied
// index is written only after all of them. A node finding no applied index
// behind its newest snapshot restores it again.
func TestRestoreCutShortHasNoAppliedIndex(t *testing.T) {
	src, err := store.Open(filepath.Join(t.TempDir(), "src"), store.Options{DisableWAL: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	b := src.NewBatch()
	b.Set(appliedKey, binary.BigEndian.AppendUint64(nil, 77))
	for i := 0; i < 2000; i++ {
		b.Set([]byte{0x01, byte(i >> 8), byte(i)}, bytes.Repeat([]byte{'v'}, 4<<10))
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	snap := src.NewSnapshot()
	defer snap.Close()
	var stream bytes.Buffer
	w := bufio.NewWriter(&stream)
	if err := writeSnapshot(w, snap, 77); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}

	for _, cut := range []int{stream.Len() / 2, stream.Len() - 1} {
		dir := filepath.Join(t.TempDir(), "dst")
		db, err := store.Open(dir, store.Options{DisableWAL: true})
		if err != nil {
			t.Fatal(err)
		}
		f, err := newFSM(db, &counter{db: db})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Restore(failingReader{bytes.NewReader(stream.Bytes()[:cut])}); err == nil {
			t.Fatalf("restore of %d of %d bytes succeeded", cut, stream.Len())
		}
		// Whatever reached the disk (flush everything: the worst case).
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
		if got, err := readApplied(db); err != nil || got != 0 {
			t.Fatalf("after a restore cut at %d of %d bytes the applied index is %d (%v), want none", cut, stream.Len(), got, err)
		}
		db.Close()
	}

	// Whole, it records the index, durably.
	dir := filepath.Join(t.TempDir(), "dst")
	db, err := store.Open(dir, store.Options{DisableWAL: true})
	if err != nil {
		t.Fatal(err)
	}
	f, err := newFSM(db, &counter{db: db})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Restore(failingReader{bytes.NewReader(stream.Bytes())}); err != nil {
		t.Fatal(err)
	}
	db.Close() // no flush: Restore flushed
	if db, err = store.Open(dir, store.Options{DisableWAL: true}); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got, err := readApplied(db); err != nil || got != 77 {
		t.Fatalf("applied after a whole restore and a crash: %d (%v), want 77", got, err)
	}
	n := 0
	_ = db.Scan([]byte{0x01}, nil, func(_, _ []byte) bool { n++; return true })
	if n != 2000 {
		t.Fatalf("%d keys after the restore, want 2000", n)
	}
}
