package etcdnode

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/internal/store"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The log database (Dir/etcdraft) holds:
//
//	'e' be64(index)  an entry (protobuf)
//	'h'              the HardState (protobuf)
//	'p'              the members: uvarint count, then per member
//	                 uvarint-prefixed name and address
const (
	prefixEntry = 'e'
	keyHard     = 'h'
	keyPeers    = 'p'
)

func entryKey(i uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixEntry
	binary.BigEndian.PutUint64(k[1:], i)
	return k
}

// logStore is the durable log: every Ready's entries and HardState go
// into one pebble batch, synced when raft says it must be (new entries,
// a new term or vote), so a member fsyncs at most once per Ready.
type logStore struct {
	db   *store.DB
	last uint64 // last index on disk
	// fsyncs counts synced batches (metrics).
	fsyncs uint64
}

// load reads the whole log into ms (the prototype keeps the log in memory:
// no snapshots, no compaction; see DESIGN.md).
func (l *logStore) load(ms *raft.MemoryStorage) (*pb.HardState, error) {
	var ents []*pb.Entry
	var err error
	scanErr := l.db.Scan([]byte{prefixEntry}, []byte{prefixEntry + 1}, func(_, v []byte) bool {
		e := &pb.Entry{}
		if err = proto.Unmarshal(v, e); err != nil {
			return false
		}
		ents = append(ents, e)
		return true
	})
	if err == nil {
		err = scanErr
	}
	if err != nil {
		return nil, fmt.Errorf("etcdnode: read the log: %w", err)
	}
	if len(ents) > 0 {
		if err := ms.Append(ents); err != nil {
			return nil, fmt.Errorf("etcdnode: load the log: %w", err)
		}
		l.last = ents[len(ents)-1].GetIndex()
	}
	hs := &pb.HardState{}
	v, err := l.db.Get([]byte{keyHard})
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		if err := proto.Unmarshal(v, hs); err != nil {
			return nil, fmt.Errorf("etcdnode: read the hard state: %w", err)
		}
	}
	return hs, nil
}

// save writes one Ready's hard state and entries in one batch. Entries
// replace any on disk at the same or later indexes (a new leader's log
// overwriting an uncommitted tail).
func (l *logStore) save(hs *pb.HardState, ents []*pb.Entry, sync bool) error {
	if hs == nil && len(ents) == 0 {
		return nil
	}
	b := l.db.NewBatch() // Commit releases it
	if hs != nil {
		v, err := proto.Marshal(hs)
		if err != nil {
			b.Close()
			return err
		}
		b.Set([]byte{keyHard}, v)
	}
	if len(ents) > 0 {
		for _, e := range ents {
			v, err := proto.Marshal(e)
			if err != nil {
				b.Close()
				return err
			}
			b.Set(entryKey(e.GetIndex()), v)
		}
		if newLast := ents[len(ents)-1].GetIndex(); newLast < l.last {
			b.DeleteRange(entryKey(newLast+1), entryKey(l.last+1))
		}
		l.last = ents[len(ents)-1].GetIndex()
	}
	if sync {
		l.fsyncs++
	}
	return b.Commit(sync)
}

func encodePeers(ps []raftnode.Peer) []byte {
	b := binary.AppendUvarint(nil, uint64(len(ps)))
	for _, p := range ps {
		for _, s := range []string{p.ID, p.Addr} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
	}
	return b
}

func decodePeers(b []byte) ([]raftnode.Peer, error) {
	bad := errors.New("etcdnode: malformed member list on disk")
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, bad
	}
	b = b[k:]
	out := make([]raftnode.Peer, 0, n)
	for range n {
		var f [2]string
		for i := range f {
			l, k := binary.Uvarint(b)
			if k <= 0 || l > uint64(len(b)-k) {
				return nil, bad
			}
			f[i] = string(b[k : k+int(l)])
			b = b[k+int(l):]
		}
		out = append(out, raftnode.Peer{ID: f[0], Addr: f[1]})
	}
	if len(b) != 0 {
		return nil, bad
	}
	return out, nil
}

// memStorage is raft's in-memory log with the member list as the initial
// configuration: the prototype has no configuration-change entries, so
// every member starts with the same voters.
type memStorage struct {
	*raft.MemoryStorage
	cs *pb.ConfState
}

func (m *memStorage) InitialState() (*pb.HardState, *pb.ConfState, error) {
	hs, _, err := m.MemoryStorage.InitialState()
	return hs, m.cs, err
}
