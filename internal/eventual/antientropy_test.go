package eventual

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/cairnkv/cairn/internal/eventual/ring"
	"github.com/cairnkv/cairn/keyspace"
)

type fakeCluster struct{ table *keyspace.Table }

func (f fakeCluster) Members() []Member          { return nil }
func (f fakeCluster) Keyspaces() *keyspace.Table { return f.table }

// digestEngine is an engine with only what localDigest needs: a replica
// store, the policies (everything eventual, 2 replicas) and a view of two
// members.
func digestEngine(t *testing.T) (*antiEntropy, *view) {
	t.Helper()
	tbl := keyspace.NewTable()
	if err := tbl.Set([]keyspace.Policy{{Prefix: "ev/", Mode: keyspace.Eventual, Replicas: 2}}); err != nil {
		t.Fatal(err)
	}
	e := &Engine{cfg: Config{Name: "n1", Cluster: fakeCluster{tbl}}, log: slog.New(slog.DiscardHandler),
		reps: openTestReplicas(t), ctx: context.Background()}
	e.cfg.AntiEntropyBytesPerSecond = 1 << 20
	v := &view{ring: ring.New([]string{"n1", "n2"}, 0), addrs: map[string]string{"n1": "a", "n2": "b"}, members: []string{"n1", "n2"}}
	return newAntiEntropy(e), v
}

// Bucket digests depend only on the versions held, not on the order they
// arrived in, and one differing version shows as exactly one bucket.
func TestDigestsFindTheDifference(t *testing.T) {
	a, v := digestEngine(t)
	b, _ := digestEngine(t)
	var puts []put
	for i := range 500 {
		puts = append(puts, put{key: fmt.Sprintf("ev/%d", i), rec: rec(uint64(100+i), "n1", "v")})
	}
	if err := a.e.reps.write(&commit{puts: puts}); err != nil {
		t.Fatal(err)
	}
	for i := len(puts) - 1; i >= 0; i-- { // the other replica gets them in reverse
		if err := b.e.reps.write(&commit{puts: puts[i : i+1]}); err != nil {
			t.Fatal(err)
		}
	}
	da, _, err := a.localDigest(v, "n2", nil)
	if err != nil {
		t.Fatal(err)
	}
	db, _, _ := b.localDigest(v, "n2", nil)
	if *da != *db {
		t.Fatal("equal replicas have different digests")
	}
	// A newer version of one key on b: one bucket differs, and it holds
	// the key.
	if err := b.e.reps.write(&commit{puts: []put{{key: "ev/7", rec: rec(999, "n2", "new")}}}); err != nil {
		t.Fatal(err)
	}
	db, _, _ = b.localDigest(v, "n2", nil)
	var diff []int
	for i := range da {
		if da[i] != db[i] {
			diff = append(diff, i)
		}
	}
	if len(diff) != 1 || diff[0] != bucketOf("ev/7") {
		t.Fatalf("differing buckets %v, want only %d", diff, bucketOf("ev/7"))
	}
	_, items, _ := b.localDigest(v, "n2", map[int]bool{diff[0]: true})
	found := false
	for _, it := range items {
		found = found || (it.key == "ev/7" && string(it.rec.value) == "new")
	}
	if !found {
		t.Fatalf("the differing bucket's records %v lack ev/7", items)
	}
}
