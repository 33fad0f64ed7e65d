package strong

import (
	"testing"

	"github.com/cairnkv/cairn/kv"
)

// TestCacheSkipsLargeValues: a record with a large value is not kept, the
// key's older record is forgotten with it, and a complete cache stops
// claiming that keys it lacks are absent.
func TestCacheSkipsLargeValues(t *testing.T) {
	var c recordCache
	c.budget = recordCacheBudget
	c.reset(true)
	c.put("k", &kv.Record{Key: "k", Value: []byte("small")})
	if r, ok := c.get("k"); !ok || string(r.Value) != "small" {
		t.Fatalf("small record: %v %v", r, ok)
	}
	c.put("k", &kv.Record{Key: "k", Value: make([]byte, maxCachedValue+1)})
	if r, ok := c.get("k"); ok {
		t.Fatalf("the large record's key is still known to the cache: %v", r)
	}
	if _, ok := c.get("other"); ok {
		t.Fatal("the cache still claims unknown keys are absent")
	}
	if c.bytes != 0 {
		t.Fatalf("the cache counts %d bytes", c.bytes)
	}
	c.put("k2", &kv.Record{Key: "k2", Value: []byte("v")})
	c.put("k2", &kv.Record{Key: "k2", Value: make([]byte, maxCachedValue+1)})
	if _, ok := c.get("k2"); ok || c.bytes != 0 {
		t.Fatalf("an incomplete cache kept k2 (bytes %d)", c.bytes)
	}
}
