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
//
// Raft reads the entry before the ones it sends a follower for its term
// (every AppendEntries, every CommitTimeout while followers are caught up),
// so the newest entries must be cached whatever their size, or each of those
// reads copies a large entry out of pebble. Large entries are therefore kept
// too while they are among the last recentLarge entries of the log, and at
// most keepLarge of them: once a few entries follow a large one, its memory
// is released.
type logCache struct {
	raft.LogStore

	mu    sync.RWMutex
	ring  []*raft.Log // by index modulo len(ring)
	large []*raft.Log // recent large entries, in index order
}

const (
	recentLarge = 8
	keepLarge   = 2
)

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
	if l == nil || l.Index != index {
		l = nil
		c.mu.RLock()
		for _, e := range c.large {
			if e.Index == index {
				l = e
			}
		}
		c.mu.RUnlock()
	}
	if l != nil {
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
		switch {
		case err != nil:
			*slot = nil
		case len(l.Data)+len(l.Extensions) <= maxCachedEntry:
			*slot = l
		default:
			*slot = nil
			c.large = append(c.large, l)
		}
	}
	if err != nil {
		c.large = nil
	}
	if n := len(logs); n > 0 {
		last := logs[n-1].Index
		keep := c.large[:0]
		for _, e := range c.large {
			if e.Index+recentLarge > last && e.Index <= last {
				keep = append(keep, e)
			}
		}
		if len(keep) > keepLarge {
			keep = append(keep[:0], keep[len(keep)-keepLarge:]...)
		}
		clear(c.large[len(keep):])
		c.large = keep
	}
	c.mu.Unlock()
	return err
}

// DeleteRange removes entries from the store and empties the cache.
func (c *logCache) DeleteRange(min, max uint64) error {
	c.mu.Lock()
	clear(c.ring)
	c.large = nil
	c.mu.Unlock()
	return c.LogStore.DeleteRange(min, max)
}
