package raftnode

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnkv/cairn/internal/store"
	"github.com/hashicorp/raft"
)

// Entry is one committed command handed to the StateMachine.
type Entry struct {
	Index uint64
	// Time is the leader's clock when it proposed the entry, in unix
	// nanoseconds. Every replica sees the same value, so decisions based on it
	// (TTL expiry) are identical everywhere.
	Time int64
	Data []byte
}

// StateMachine is the deterministic part of a replicated service. Apply
// writes the effect of entries into b (the adapter commits it together with the
// applied index) and returns one result per entry, delivered to the proposer.
// Keys written by a StateMachine must start with a byte >= 0x01; 0x00 is
// reserved for the adapter.
type StateMachine interface {
	Apply(b *store.Batch, entries []Entry) [][]byte
	// Restored is called after a snapshot replaced the whole state.
	Restored() error
}

// Committer is a StateMachine that wants to know when the batch its Apply
// wrote has been committed to the database: Committed runs on the apply
// goroutine after the commit and before the applied index moves, so a read
// that waits for that index sees whatever Committed publishes.
type Committer interface {
	Committed()
}

var appliedKey = []byte{0x00, 'a', 'p', 'p', 'l', 'i', 'e', 'd'}

// fsm adapts a StateMachine to raft.BatchingFSM on a pebble state database.
// Batches are committed unsynced: the Raft log is the durable copy, and the
// applied index stored in the same batch makes replay after a crash skip
// exactly what was already applied.
type fsm struct {
	db *store.DB
	sm StateMachine

	applied atomic.Uint64
	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever applied moves
	// m times snapshots and restores (nil: not counted).
	m *nodeMetrics
}

var _ raft.BatchingFSM = (*fsm)(nil)

func newFSM(db *store.DB, sm StateMachine) (*fsm, error) {
	f := &fsm{db: db, sm: sm, changed: make(chan struct{})}
	idx, err := readApplied(db)
	if err != nil {
		return nil, err
	}
	f.applied.Store(idx)
	return f, nil
}

func readApplied(db *store.DB) (uint64, error) {
	v, err := db.Get(appliedKey)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("raftnode: applied index has %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	if len(logs) == 0 {
		return out
	}
	applied := f.applied.Load()
	last := logs[len(logs)-1].Index
	if last <= applied {
		return out
	}
	entries := make([]Entry, 0, len(logs))
	pos := make([]int, 0, len(logs))
	b := f.newBatch(logs)
	cs := chunks{db: f.db}
	for i, l := range logs {
		if l.Index <= applied || l.Type != raft.LogCommand {
			continue // applied before a restart, or not a command
		}
		t, data, kind, err := unframe(l.Data)
		if err != nil {
			out[i] = err
			continue
		}
		switch kind {
		case kindTermStart:
			// Only moves the applied index, and ends the chunked commands
			// of earlier terms (see chunk.go).
			cs.dropAll(b)
			continue
		case kindChunk:
			c, err := parseChunk(data)
			if err != nil {
				out[i] = err
				continue
			}
			cmd, err := cs.add(b, c)
			switch {
			case err != nil:
				out[i] = err
				continue
			case cmd == nil:
				continue // not the last chunk
			}
			data = cmd
		}
		entries = append(entries, Entry{Index: l.Index, Time: t, Data: data})
		pos = append(pos, i)
	}
	cs.persist(b)
	if len(entries) > 0 {
		res := f.sm.Apply(b, entries)
		for j, p := range pos {
			out[p] = res[j]
		}
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], last)
	b.Set(appliedKey, v[:])
	if err := b.Commit(false); err != nil {
		// The state machine cannot continue from a state it failed to write.
		panic(fmt.Sprintf("raftnode: commit applied batch: %v", err))
	}
	if c, ok := f.sm.(Committer); ok && len(entries) > 0 {
		c.Committed()
	}
	f.setApplied(last)
	return out
}

func (f *fsm) setApplied(i uint64) {
	f.applied.Store(i)
	f.mu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// appliedChanged returns a channel closed at the next change of the applied index.
func (f *fsm) appliedChanged() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// Snapshot makes the applied state durable and pins a pebble snapshot to
// stream. Raft compacts the log up to the snapshot's index once it is
// persisted, and on a restart replays only from that index on, so the state
// on disk must already hold every entry up to it: a flush, not a WAL sync,
// since the state database may have no WAL. Raft calls this on the apply
// goroutine, so nothing is applied between the flush and the snapshot.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.db.Flush(); err != nil {
		return nil, err
	}
	return &fsmSnapshot{snap: f.db.NewSnapshot(), applied: f.applied.Load(), m: f.m}, nil
}

// Snapshot stream: magic, applied index, then (uvarint klen, key, uvarint vlen,
// value)* and a final zero klen.
var snapshotMagic = [8]byte{'c', 'a', 'i', 'r', 'n', 's', 'n', '1'}

type fsmSnapshot struct {
	snap    *store.Snapshot
	applied uint64
	m       *nodeMetrics
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	start := time.Now()
	cw := &countingWriter{w: sink}
	w := bufio.NewWriterSize(cw, 1<<20)
	err := writeSnapshot(w, s.snap, s.applied)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		_ = sink.Cancel()
		return err
	}
	if err := sink.Close(); err != nil {
		return err
	}
	if s.m != nil {
		s.m.snapDur.Observe(since(start))
		s.m.snapBytes.Observe(float64(cw.n))
	}
	return nil
}

func writeSnapshot(w *bufio.Writer, snap *store.Snapshot, applied uint64) error {
	w.Write(snapshotMagic[:])
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], applied)
	w.Write(hdr[:])
	var werr error
	var tmp [binary.MaxVarintLen64]byte
	err := snap.Scan([]byte{0x00}, nil, func(k, v []byte) bool {
		n := binary.PutUvarint(tmp[:], uint64(len(k)))
		w.Write(tmp[:n])
		w.Write(k)
		n = binary.PutUvarint(tmp[:], uint64(len(v)))
		w.Write(tmp[:n])
		_, werr = w.Write(v)
		return werr == nil
	})
	if err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("raftnode: write snapshot: %w", werr)
	}
	_, err = w.Write([]byte{0})
	return err
}

func (s *fsmSnapshot) Release() { _ = s.snap.Close() }

// snapshotApplied reads the applied index recorded in a snapshot stream's header.
func snapshotApplied(r io.Reader) (uint64, error) {
	var hdr [16]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, fmt.Errorf("raftnode: read snapshot header: %w", err)
	}
	if [8]byte(hdr[:8]) != snapshotMagic {
		return 0, errors.New("raftnode: not a cairn snapshot")
	}
	return binary.BigEndian.Uint64(hdr[8:]), nil
}

// Restore replaces the whole state with the snapshot's. The state is
// written in many batches and the database flushes full memtables on its
// own, so a crash midway can leave any prefix of them on disk: the applied
// index goes in last, after every other key, and until then the database
// has none (the range delete removed it), so a restart finds the state
// behind the snapshot and restores it again (catchUpFromSnapshot). The
// state is flushed before Restore returns: Raft compacts the log behind an
// installed snapshot right after.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if f.m != nil {
		defer func(start time.Time) { f.m.restoreDur.Observe(since(start)) }(time.Now())
	}
	r := bufio.NewReaderSize(rc, 1<<20)
	applied, err := snapshotApplied(r)
	if err != nil {
		return err
	}
	if err := f.db.DeleteRange([]byte{0x00}, []byte{0xff, 0xff, 0xff, 0xff}, false); err != nil {
		return err
	}
	b := f.db.NewBatch()
	for {
		kl, err := binary.ReadUvarint(r)
		if err != nil {
			b.Close()
			return fmt.Errorf("raftnode: read snapshot: %w", err)
		}
		if kl == 0 {
			break
		}
		k := make([]byte, kl)
		if _, err := io.ReadFull(r, k); err != nil {
			b.Close()
			return fmt.Errorf("raftnode: read snapshot: %w", err)
		}
		vl, err := binary.ReadUvarint(r)
		if err != nil || vl > 1<<30 {
			b.Close()
			return fmt.Errorf("raftnode: read snapshot: bad value length: %w", err)
		}
		if vl > presizeBatch {
			// A large value gets a batch of its own, sized for it, and
			// is read straight into it: one copy, not a read buffer plus a
			// batch grown by doubling.
			if !b.Empty() {
				if err := b.Commit(false); err != nil {
					return err
				}
			} else {
				b.Close()
			}
			b = f.db.NewBatchSize(int(kl + vl))
		}
		if bytes.Equal(k, appliedKey) {
			// Written last, from the header (which holds the same index).
			if _, err := io.CopyN(io.Discard, r, int64(vl)); err != nil {
				b.Close()
				return fmt.Errorf("raftnode: read snapshot: %w", err)
			}
			continue
		}
		if _, err := io.ReadFull(r, b.SetBuffer(k, int(vl))); err != nil {
			b.Close()
			return fmt.Errorf("raftnode: read snapshot: %w", err)
		}
		if b.Len() > 4<<20 {
			if err := b.Commit(false); err != nil {
				return err
			}
			b = f.db.NewBatch()
		}
	}
	if err := b.Commit(false); err != nil {
		return err
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], applied)
	b = f.db.NewBatch()
	b.Set(appliedKey, v[:])
	if err := b.Commit(false); err != nil {
		return err
	}
	if err := f.db.Flush(); err != nil {
		return err
	}
	// The machine reloads what it derives from the state (its caches, the
	// revision, users and rules) before the applied index moves: a read
	// that waited for an index must not find the state from before.
	if err := f.sm.Restored(); err != nil {
		return err
	}
	f.setApplied(applied)
	return nil
}

// Log entry kinds, the first byte of every command entry.
const (
	// kindCommand carries a StateMachine command.
	kindCommand byte = 1
	// kindTermStart is proposed by each new leader. Unlike raft's own no-op it
	// reaches the FSM, so the applied index can always reach the commit index
	// (read index waits on that).
	kindTermStart byte = 2
	// kindChunk carries one chunk of a large command (see chunk.go).
	kindChunk byte = 3
)

// frame prefixes a command with its kind and the proposing leader's clock.
func frame(kind byte, t time.Time, data []byte) []byte {
	out := make([]byte, 9+len(data))
	out[0] = kind
	binary.BigEndian.PutUint64(out[1:], uint64(t.UnixNano()))
	copy(out[9:], data)
	return out
}

// newBatch starts the batch that applies logs. Entries carrying large
// values get a batch sized for them up front (what they write is about what
// they carry: a chunk is stored, the command it completes is applied), so
// it is allocated once rather than grown by doubling.
func (f *fsm) newBatch(logs []*raft.Log) *store.Batch {
	n := 0
	for _, l := range logs {
		if len(l.Data) > 0 && l.Data[0] == kindChunk && len(l.Data) >= chunkHeader {
			// A chunk's bytes are written with its command (usually not
			// themselves: see chunks.persist).
			if c, err := parseChunk(l.Data[9:]); err == nil && c.last {
				n += int(c.size)
			}
			continue
		}
		n += len(l.Data)
	}
	if n < presizeBatch {
		return f.db.NewBatch()
	}
	return f.db.NewBatchSize(n + n/64 + 4<<10)
}

// presizeBatch is the size from which newBatch sizes the batch itself.
const presizeBatch = 1 << 20

func unframe(b []byte) (int64, []byte, byte, error) {
	if len(b) < 9 || (b[0] != kindCommand && b[0] != kindTermStart && b[0] != kindChunk) {
		return 0, nil, 0, errors.New("raftnode: malformed log entry")
	}
	return int64(binary.BigEndian.Uint64(b[1:])), b[9:], b[0], nil
}
