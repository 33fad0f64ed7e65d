package raftnode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cairnkv/cairn/internal/store"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// LogStore is raft's log and stable store on one pebble database. Each
// StoreLogs call is one synced batch, so a batch of entries costs one fsync.
type LogStore struct {
	db *store.DB

	mu          sync.Mutex // guards first/last; raft calls from several goroutines
	first, last uint64
	// fsync, when set, times each synced batch (the node's metrics).
	// beforeStore, a test hook (Config.BeforeStoreLogs), runs before each append.
	beforeStore func()
	fsync       prometheus.Histogram
}

var (
	_ raft.LogStore    = (*LogStore)(nil)
	_ raft.StableStore = (*LogStore)(nil)
)

const (
	prefixLog    = 'l'
	prefixStable = 's'
)

var errCorruptLog = errors.New("raftnode: corrupt log entry")

// NewLogStore opens the log kept in db.
func NewLogStore(db *store.DB) (*LogStore, error) {
	s := &LogStore{db: db}
	lo, hi := []byte{prefixLog}, []byte{prefixLog + 1}
	if k, _, err := db.First(lo, hi); err == nil {
		s.first = binary.BigEndian.Uint64(k[1:])
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if k, _, err := db.Last(lo, hi); err == nil {
		s.last = binary.BigEndian.Uint64(k[1:])
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	return s, nil
}

func logKey(i uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixLog
	binary.BigEndian.PutUint64(k[1:], i)
	return k
}

// FirstIndex returns the first index written, 0 for none.
func (s *LogStore) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first, nil
}

// LastIndex returns the last index written, 0 for none.
func (s *LogStore) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, nil
}

// GetLog reads the entry at index into out.
func (s *LogStore) GetLog(index uint64, out *raft.Log) error {
	v, err := s.db.Get(logKey(index))
	if errors.Is(err, store.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return err
	}
	return decodeLog(v, index, out)
}

// StoreLog stores one entry.
func (s *LogStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs stores entries in one synced batch.
func (s *LogStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	if s.beforeStore != nil {
		s.beforeStore()
	}
	// Each entry is encoded in place in a batch allocated once for all of
	// them: a large entry is copied into the batch and nowhere else.
	n := 0
	for _, l := range logs {
		n += 9 + encodedLogLen(l)
	}
	b := s.db.NewBatchSize(n)
	for _, l := range logs {
		putLog(b.SetBuffer(logKey(l.Index), encodedLogLen(l)), l)
	}
	start := time.Now()
	if err := b.Commit(true); err != nil {
		return err
	}
	if s.fsync != nil {
		s.fsync.Observe(since(start))
	}
	s.mu.Lock()
	if s.first == 0 || logs[0].Index < s.first {
		s.first = logs[0].Index
	}
	if li := logs[len(logs)-1].Index; li > s.last {
		s.last = li
	}
	s.mu.Unlock()
	return nil
}

// DeleteRange removes entries min..max inclusive (compaction from the front,
// or truncation of a conflicting suffix).
func (s *LogStore) DeleteRange(min, max uint64) error {
	if err := s.db.DeleteRange(logKey(min), logKey(max+1), true); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if min <= s.first {
		s.first = max + 1
	}
	if max >= s.last {
		s.last = min - 1
	}
	if s.first > s.last {
		s.first, s.last = 0, 0
	}
	return nil
}

// Set stores a stable value.
func (s *LogStore) Set(key, val []byte) error {
	b := s.db.NewBatch()
	b.Set(append([]byte{prefixStable}, key...), val)
	return b.Commit(true)
}

// Get reads a stable value; a missing key yields an empty value, as raft expects.
func (s *LogStore) Get(key []byte) ([]byte, error) {
	v, err := s.db.Get(append([]byte{prefixStable}, key...))
	if errors.Is(err, store.ErrNotFound) {
		return nil, errors.New("not found")
	}
	return v, err
}

// SetUint64 stores a stable integer.
func (s *LogStore) SetUint64(key []byte, val uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], val)
	return s.Set(key, b[:])
}

// GetUint64 reads a stable integer; missing is 0.
func (s *LogStore) GetUint64(key []byte) (uint64, error) {
	v, err := s.db.Get(append([]byte{prefixStable}, key...))
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("raftnode: stable key %q has %d bytes", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// Entry layout: term u64 | type u8 | appendedAt i64 | len(data) uvarint | data | extensions.

// encodedLogLen is the size of l's encoding.
func encodedLogLen(l *raft.Log) int {
	var v [binary.MaxVarintLen64]byte
	return 17 + binary.PutUvarint(v[:], uint64(len(l.Data))) + len(l.Data) + len(l.Extensions)
}

// putLog encodes l into buf, which is encodedLogLen(l) bytes long.
func putLog(buf []byte, l *raft.Log) {
	binary.BigEndian.PutUint64(buf, l.Term)
	buf[8] = byte(l.Type)
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	binary.BigEndian.PutUint64(buf[9:], uint64(at))
	k := 17 + binary.PutUvarint(buf[17:], uint64(len(l.Data)))
	k += copy(buf[k:], l.Data)
	copy(buf[k:], l.Extensions)
}

func decodeLog(v []byte, index uint64, out *raft.Log) error {
	if len(v) < 17 {
		return errCorruptLog
	}
	out.Index = index
	out.Term = binary.BigEndian.Uint64(v)
	out.Type = raft.LogType(v[8])
	if at := int64(binary.BigEndian.Uint64(v[9:])); at != 0 {
		out.AppendedAt = time.Unix(0, at)
	} else {
		out.AppendedAt = time.Time{}
	}
	n, k := binary.Uvarint(v[17:])
	if k <= 0 || uint64(len(v)-17-k) < n {
		return errCorruptLog
	}
	start := 17 + k
	out.Data = v[start : start+int(n)]
	if rest := v[start+int(n):]; len(rest) > 0 {
		out.Extensions = rest
	} else {
		out.Extensions = nil
	}
	return nil
}

// logDBOptions are the log database's: a 16 MiB block cache and no
// compression (entries are mostly values the client sent, deleted soon).
func logDBOptions(logger *slog.Logger, onFail func(error)) store.Options {
	return store.Options{Logger: logger, CacheBytes: 16 << 20, NoCompression: true, OnFail: onFail}
}
