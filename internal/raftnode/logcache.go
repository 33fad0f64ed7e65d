package raftnode

import (
	"sync"

	"github.com/hashicorp/raft"
)

// logCache keeps the most recent log entries in memory in front of the
// LogStore, as raft.LogCache does, so that replication and the FSM read
// fresh entries without a pebble read, but only entries of at most
// maxCachedEntry bytes: raft.LogCache holds its last 1024 entries whatever
// their size, which with 64 MiB values is up to 64 GiB per node. A large
// entry is read back from the store when it is needed (its bytes are in
// pebble's memtable or block cache right after it was written).
type logCache struct {
	raft.LogStore

	mu   sync.RWMutex
	ring []*raft.Log // by index modulo len(ring)
}

const (
	logCacheEntries = 1024
	// maxCachedEntry bounds an entry kept in the cache, so the cache holds
	// at most logCacheEntries × maxCachedEntry bytes (64 MiB).
	maxCachedEntry = 64 << 10
)

var _ raft.LogStore = (*logCache)(nil)

func newLogCache(store raft.LogStore) *logCache {
	return &logCache{LogStore: store, ring: make([]*raft.Log, logCacheEntries)}
}

// GetLog reads an entry from the cache, or else from the store.
func (c *logCache) GetLog(index uint64, out *raft.Log) error {
	c.mu.RLock()
	l := c.ring[index%uint64(len(c.ring))]
	c.mu.RUnlock()
	if l != nil && l.Index == index {
		*out = *l
		return nil
	}
	return c.LogStore.GetLog(index, out)
}

// StoreLog stores one entry.
func (c *logCache) StoreLog(l *raft.Log) error { return c.StoreLogs([]*raft.Log{l}) }

// StoreLogs stores entries, then caches the small ones; a large one clears
// its slot, so the slot never answers for an older index.
func (c *logCache) StoreLogs(logs []*raft.Log) error {
	err := c.LogStore.StoreLogs(logs)
	c.mu.Lock()
	for _, l := range logs {
		slot := &c.ring[l.Index%uint64(len(c.ring))]
		if err == nil && len(l.Data)+len(l.Extensions) <= maxCachedEntry {
			*slot = l
		} else {
			*slot = nil
		}
	}
	c.mu.Unlock()
	return err
}

// DeleteRange removes entries from the store and empties the cache.
func (c *logCache) DeleteRange(min, max uint64) error {
	c.mu.Lock()
	clear(c.ring)
	c.mu.Unlock()
	return c.LogStore.DeleteRange(min, max)
}
