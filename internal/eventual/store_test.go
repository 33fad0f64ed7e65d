package eventual

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/cairnkv/cairn/internal/eventual/hlc"
)

func openTestReplicas(t testing.TB) *replicas {
	t.Helper()
	r, err := openReplicas(t.TempDir(), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.close() })
	return r
}

func rec(ts uint64, origin, value string) *record {
	return &record{version: version{stamp: hlc.Timestamp(ts), origin: origin}, value: []byte(value)}
}

// Merging keeps the greatest (stamp, origin) whatever the order and however
// often a version arrives: replicas that received the same versions hold
// the same one.
func TestReplicasLastWriterWins(t *testing.T) {
	versions := []*record{rec(10, "n1", "a"), rec(12, "n1", "b"), rec(12, "n2", "c"), rec(11, "n3", "d")}
	orders := [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {2, 0, 3, 1, 2, 2}, {1, 3, 0, 2, 0}}
	for _, order := range orders {
		r := openTestReplicas(t)
		for _, i := range order {
			if err := r.write(&commit{puts: []put{{key: "k", rec: versions[i]}}}); err != nil {
				t.Fatal(err)
			}
		}
		got, err := r.get("k")
		if err != nil || string(got.value) != "c" || got.origin != "n2" {
			t.Fatalf("order %v: %+v %v, want c from n2 at 12", order, got, err)
		}
	}
	// Two writes of one key in one commit merge with each other too.
	r := openTestReplicas(t)
	if err := r.write(&commit{puts: []put{{key: "k", rec: versions[2]}, {key: "k", rec: versions[0]}}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.get("k"); string(got.value) != "c" {
		t.Fatalf("in one commit: %q", got.value)
	}
}

// A tombstone is a version like any other: an older value never replaces it.
func TestReplicasTombstoneWins(t *testing.T) {
	r := openTestReplicas(t)
	del := &record{version: version{stamp: 20, origin: "n1"}, tombstone: true}
	for _, p := range []*record{rec(10, "n1", "old"), del, rec(15, "n2", "older than the delete")} {
		if err := r.write(&commit{puts: []put{{key: "k", rec: p}}}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := r.get("k")
	if err != nil || !got.tombstone || got.live(unixNano()) {
		t.Fatalf("%+v %v, want the tombstone", got, err)
	}
	c := &commit{puts: []put{{key: "k", rec: rec(30, "n3", "new")}}}
	if err := r.write(c); err != nil || c.out[0].hadLive {
		t.Fatalf("a write after a delete: %v, had live %v", err, c.out[0].hadLive)
	}
}

// Hints are kept apart from the replicas, per owner, and dropped only if
// unchanged since they were delivered.
func TestReplicasHints(t *testing.T) {
	r := openTestReplicas(t)
	if err := r.write(&commit{puts: []put{{key: "a", rec: rec(1, "n1", "x"), hint: "n2"}, {key: "b", rec: rec(1, "n1", "y"), hint: "n3"}}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.get("a"); got != nil {
		t.Fatal("a hint is readable as a replica")
	}
	owners, err := r.hintOwners()
	if err != nil || fmt.Sprint(owners) != "[n2 n3]" {
		t.Fatalf("owners %v %v", owners, err)
	}
	// A newer hint arrives after the old one was delivered: dropping the
	// delivered one keeps the newer.
	if err := r.write(&commit{puts: []put{{key: "a", rec: rec(2, "n1", "z"), hint: "n2"}}}); err != nil {
		t.Fatal(err)
	}
	if err := r.write(&commit{dropHints: []put{{key: "a", rec: rec(1, "n1", "x"), hint: "n2"}}}); err != nil {
		t.Fatal(err)
	}
	var kept []string
	_ = r.hints("n2", func(key string, rc *record) bool { kept = append(kept, key+"="+string(rc.value)); return true })
	if fmt.Sprint(kept) != "[a=z]" {
		t.Fatalf("hints for n2 after the drop: %v", kept)
	}
}

func TestRecordCodec(t *testing.T) {
	in := &record{version: version{stamp: 123456789, origin: "node-1"}, expires: 42, tombstone: true, value: []byte("v")}
	out, err := decodeRecord(in.encode())
	if err != nil || out.stamp != in.stamp || out.origin != in.origin || out.expires != 42 || !out.tombstone || string(out.value) != "v" {
		t.Fatalf("%+v %v", out, err)
	}
	for _, bad := range [][]byte{nil, {2}, in.encode()[:17], append(in.encode()[:18], 0xff)} {
		if _, err := decodeRecord(bad); err == nil {
			t.Fatalf("decoded %x", bad)
		}
	}
}

// FuzzMessages feeds the RPC decoders hostile bytes: they fail cleanly.
func FuzzMessages(f *testing.F) {
	var w writer
	w.uvarint(1)
	w.str("k")
	w.str("")
	w.byte1(1)
	w.rec(rec(1, "n1", "v"))
	f.Add(w.b)
	f.Add(encodeScan([]scanItem{{"k", rec(1, "n1", "v")}}, true))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = decodeScan(b)
		_, _, _ = decodePutReply(b, 1)
		_, _ = decodeGetReply(b, 1)
		rd := reader{b: b}
		for n := rd.count(3 + recordFixedLen); n > 0 && rd.err == nil; n-- {
			_, _, _, _ = rd.str(), rd.str(), rd.byte1(), rd.rec()
		}
	})
}

// BenchmarkReplicaWrite is one synced write of a 256-byte value through
// the committer, by 1 and by 64 writers at once (ns/op is per write), of a
// key that is not mirrored and (mirrored/…) of one whose write is queued
// in the mirror outbox too.
func BenchmarkReplicaWrite(b *testing.B) {
	for _, mirrored := range []bool{false, true} {
		for _, writers := range []int{1, 64} {
			name, prefix := fmt.Sprintf("writers=%d", writers), "" // as before the outbox
			if mirrored {
				name, prefix = "mirrored/"+name, "mir/"
			}
			b.Run(name, func(b *testing.B) {
				r := openTestReplicas(b)
				mustOutboxEngine(b, "n1", r) // the hook an engine sets
				val := make([]byte, 256)
				b.SetParallelism(writers)
				b.ResetTimer()
				var n uint64
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						i++
						p := &record{version: version{stamp: hlc.Timestamp(n + uint64(i)), origin: "n1"}, value: val}
						if err := r.write(&commit{puts: []put{{key: fmt.Sprintf("%sk%d", prefix, i%100000), rec: p}}}); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
	}
}
