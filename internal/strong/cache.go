package strong

import (
	"sync"
	"sync/atomic"

	"github.com/cairnkv/cairn/kv"
)

// recordCache maps keys to their current committed record (nil: known
// absent). Readers on any goroutine look keys up; the apply goroutine alone
// adds to it. When it holds more than its budget of bytes it starts over
// with a new generation; a miss only costs a pebble read. Records are never
// changed once cached (the machine makes a new record for every write).
type recordCache struct {
	gen    atomic.Pointer[cacheGen]
	bytes  int // apply goroutine only
	budget int
}

// cacheGen is one generation of the cache.
type cacheGen struct {
	shards [cacheShards]cacheShard
	// complete means the generation holds every record of the database, so
	// a key it does not hold is absent and needs no pebble read. It holds
	// from an empty database until the cache first outgrows its budget.
	complete bool
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]*kv.Record
}

const (
	recordCacheBudget = 64 << 20
	// maxCachedValue is the largest value the cache keeps.
	maxCachedValue = 1 << 20
	cacheShards    = 32
)

func newCacheGen(complete bool) *cacheGen {
	g := &cacheGen{complete: complete}
	for i := range g.shards {
		g.shards[i].m = map[string]*kv.Record{}
	}
	return g
}

func (g *cacheGen) shard(key string) *cacheShard {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return &g.shards[h%cacheShards]
}

// get returns key's committed record (nil when absent) and whether the
// cache knows it.
func (c *recordCache) get(key string) (*kv.Record, bool) {
	g := c.gen.Load()
	if g == nil {
		return nil, false
	}
	sh := g.shard(key)
	sh.mu.RLock()
	r, ok := sh.m[key]
	sh.mu.RUnlock()
	return r, ok || g.complete
}

// put records key's committed record; apply goroutine only. A record with
// a value over maxCachedValue is not kept (its key is read from the
// database): a few such values would take the whole budget, and each would
// stay in memory until the generation turns over.
func (c *recordCache) put(key string, r *kv.Record) {
	g := c.gen.Load()
	large := r != nil && len(r.Value) > maxCachedValue
	if g == nil || c.bytes > c.budget || large && g.complete {
		// A complete generation answers "absent" for a key it lacks, so a
		// record it may not hold needs an incomplete one.
		g = newCacheGen(g != nil && g.complete && c.bytes == 0 && !large)
		c.gen.Store(g)
		c.bytes = 0
	}
	sh := g.shard(key)
	sh.mu.Lock()
	if old, ok := sh.m[key]; ok {
		c.bytes -= cacheSize(key, old)
	}
	if large {
		delete(sh.m, key)
	} else {
		sh.m[key] = r
		c.bytes += cacheSize(key, r)
	}
	sh.mu.Unlock()
}

func cacheSize(key string, r *kv.Record) int {
	if r == nil {
		return len(key) + 64
	}
	return len(key) + 96 + len(r.Value)
}

// reset starts an empty generation, complete when the database holds no records.
func (c *recordCache) reset(complete bool) {
	c.gen.Store(newCacheGen(complete))
	c.bytes = 0
}
