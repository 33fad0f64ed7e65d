package mirror

import (
	"context"
	"crypto/md5" //nolint:gosec // the fake bucket's ETag, as S3's
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/backup"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// fakeBucket is an in-memory backup.Bucket that can fail its next writes.
type fakeBucket struct {
	mu      sync.Mutex
	objects map[string]fakeObject
	fail    int // the next fail writes are refused
	writes  int
}

type fakeObject struct {
	value []byte
	meta  backup.ObjectMeta
}

var errFakeDown = errors.New("fake bucket: down")

func newFakeBucket() *fakeBucket { return &fakeBucket{objects: map[string]fakeObject{}} }

func (b *fakeBucket) refuse() error {
	if b.fail > 0 {
		b.fail--
		return errFakeDown
	}
	b.writes++
	return nil
}

func (b *fakeBucket) PutObject(_ context.Context, key string, value []byte, meta backup.ObjectMeta) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.refuse(); err != nil {
		return err
	}
	b.objects[key] = fakeObject{append([]byte(nil), value...), meta}
	return nil
}

func (b *fakeBucket) DeleteObject(_ context.Context, key string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.refuse(); err != nil {
		return err
	}
	delete(b.objects, key)
	return nil
}

func (b *fakeBucket) GetObject(_ context.Context, key string) ([]byte, backup.ObjectMeta, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.objects[key]
	if !ok {
		return nil, backup.ObjectMeta{}, fmt.Errorf("fake: %s: %w", key, fs.ErrNotExist)
	}
	return o.value, o.meta, nil
}

func (b *fakeBucket) StatObject(ctx context.Context, key string) (backup.ObjectMeta, error) {
	_, meta, err := b.GetObject(ctx, key)
	return meta, err
}

func (b *fakeBucket) ListObjects(_ context.Context, prefix string, fn func(backup.ObjectInfo) error) error {
	b.mu.Lock()
	var infos []backup.ObjectInfo
	for k, o := range b.objects {
		if strings.HasPrefix(k, prefix) {
			sum := md5.Sum(o.value) //nolint:gosec // see the import
			infos = append(infos, backup.ObjectInfo{Key: k, Size: int64(len(o.value)), ETag: hex.EncodeToString(sum[:])})
		}
	}
	b.mu.Unlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	for _, o := range infos {
		if err := fn(o); err != nil {
			return err
		}
	}
	return nil
}

func (b *fakeBucket) ListVersions(context.Context, string, func(backup.ObjectVersion) error) error {
	return errors.New("fake: no versions")
}

func (b *fakeBucket) GetVersion(context.Context, string, string) ([]byte, backup.ObjectMeta, error) {
	return nil, backup.ObjectMeta{}, errors.New("fake: no versions")
}

func (b *fakeBucket) String() string { return "s3://fake" }

func (b *fakeBucket) values() map[string]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]string{}
	for k, o := range b.objects {
		out[k] = string(o.value)
	}
	return out
}

// fakeKV is a strong keyspace store: the Service and Strong the mirror
// reads, with a watch fed by its writes.
type fakeKV struct {
	mu      sync.Mutex
	rev     int64
	recs    map[string]*kv.Record
	table   *keyspace.Table
	cursors map[string]int64
	events  chan []kv.Event
}

func newFakeKV(t *testing.T, policies ...keyspace.Policy) *fakeKV {
	t.Helper()
	tab := keyspace.NewTable()
	if err := tab.Set(policies); err != nil {
		t.Fatal(err)
	}
	return &fakeKV{recs: map[string]*kv.Record{}, table: tab, cursors: map[string]int64{}, events: make(chan []kv.Event, 100)}
}

func (f *fakeKV) put(key, value string) {
	f.mu.Lock()
	f.rev++
	f.recs[key] = &kv.Record{Key: key, Value: []byte(value), ModRevision: f.rev}
	ev := kv.Event{Type: kv.EventPut, Key: key, Value: []byte(value), Revision: f.rev}
	f.mu.Unlock()
	f.events <- []kv.Event{ev}
}

func (f *fakeKV) del(key string) {
	f.mu.Lock()
	f.rev++
	delete(f.recs, key)
	ev := kv.Event{Type: kv.EventDelete, Key: key, Revision: f.rev}
	f.mu.Unlock()
	f.events <- []kv.Event{ev}
}

func (f *fakeKV) Get(_ context.Context, key string, _ kv.ReadOptions) (*kv.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.recs[key]; ok {
		return r, nil
	}
	return nil, kv.ErrKeyNotFound
}

func (f *fakeKV) List(_ context.Context, prefix string, o kv.ListOptions) (*kv.ListResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var keys []string
	for k := range f.recs {
		if strings.HasPrefix(k, prefix) && k > o.After {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	res := &kv.ListResult{Revision: f.rev}
	for i, k := range keys {
		if o.Limit > 0 && i == o.Limit {
			res.More = true
			break
		}
		res.Items = append(res.Items, f.recs[k])
	}
	return res, nil
}

func (f *fakeKV) Keyspaces() *keyspace.Table { return f.table }
func (f *fakeKV) IsLeader() bool             { return true }
func (f *fakeKV) ClusterID() string          { return "ours" }

func (f *fakeKV) Revision() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rev
}

func (f *fakeKV) MirrorCursor(prefix string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cursors[prefix], nil
}

func (f *fakeKV) SaveMirrorCursor(_ context.Context, prefix string, rev int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cursors[prefix] = max(f.cursors[prefix], rev)
	return nil
}

// WatchProgress delivers the writes made after it was called (the tests
// write only after the first reconcile).
func (f *fakeKV) WatchProgress(ctx context.Context, _ string, _ int64, _ func(int64)) (iter.Seq2[[]kv.Event, error], error) {
	return func(yield func([]kv.Event, error) bool) {
		for {
			select {
			case <-ctx.Done():
				return
			case evs := <-f.events:
				if !yield(evs, nil) {
					return
				}
			}
		}
	}, nil
}

func newTestMirror(f *fakeKV, b *fakeBucket, prefix string) *mirror {
	mg := New(Config{Service: f, Strong: f, Open: func(string) (backup.Bucket, error) { return b, nil }})
	return &mirror{mg: mg, prefix: prefix, mode: keyspace.Strong, bucket: b, log: mg.log}
}

// The reconcile writes missing and different objects, removes objects
// without a key, leaves another cluster's objects and a keyspace inside
// the prefix alone, and returns the revision it read at.
func TestReconcile(t *testing.T) {
	f := newFakeKV(t, keyspace.Policy{Prefix: "files/", Mode: keyspace.Strong, Backup: "s3://fake"},
		keyspace.Policy{Prefix: "files/tmp/", Mode: keyspace.Strong})
	for k, v := range map[string]string{"files/a": "A", "files/b": "B", "files/c": "C", "files/tmp/x": "X"} {
		f.put(k, v)
	}
	b := newFakeBucket()
	ctx := context.Background()
	_ = b.PutObject(ctx, "files/b", []byte("old B"), backup.ObjectMeta{Cluster: "ours"})
	_ = b.PutObject(ctx, "files/c", []byte("C"), backup.ObjectMeta{Cluster: "ours"})
	_ = b.PutObject(ctx, "files/gone", []byte("G"), backup.ObjectMeta{Cluster: "ours"})
	_ = b.PutObject(ctx, "files/hand-made", []byte("H"), backup.ObjectMeta{})
	_ = b.PutObject(ctx, "files/theirs", []byte("T"), backup.ObjectMeta{Cluster: "theirs"})
	_ = b.PutObject(ctx, "files/tmp/y", []byte("Y"), backup.ObjectMeta{Cluster: "ours"})
	m := newTestMirror(f, b, "files/")
	from, err := m.reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if from != f.Revision() {
		t.Fatalf("reconcile read at revision %d, want %d", from, f.Revision())
	}
	want := map[string]string{"files/a": "A", "files/b": "B", "files/c": "C", "files/theirs": "T", "files/tmp/y": "Y"}
	if got := b.values(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("bucket after reconcile: %v, want %v", got, want)
	}
	st := m.status.Reconcile
	if st.Put != 2 || st.Deleted != 2 || st.Foreign != 1 || st.Keys != 3 {
		t.Fatalf("stats %+v, want 2 put, 2 deleted, 1 foreign, 3 keys", *st)
	}
	// The key of the other cluster's object changes here: the keyspace
	// wins for its own writes, but a reconcile leaves a differing
	// foreign object alone.
	f.put("files/theirs", "mine")
	_ = b.PutObject(ctx, "files/theirs", []byte("T2"), backup.ObjectMeta{Cluster: "theirs"})
	if _, err := m.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := b.values()["files/theirs"]; got != "T2" || m.status.Reconcile.Foreign != 1 {
		t.Fatalf("a foreign object after reconcile: %q (foreign %d)", got, m.status.Reconcile.Foreign)
	}
}

// A bucket that refuses writes delays them; the leader's copy goes on in
// order once it takes them again, and the cursor follows.
func TestStrongMirrorRetriesUntilTheBucketTakesWrites(t *testing.T) {
	f := newFakeKV(t, keyspace.Policy{Prefix: "files/", Mode: keyspace.Strong, Backup: "s3://fake"})
	b := newFakeBucket()
	m := newTestMirror(f, b, "files/")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.runStrong(ctx)
	}()
	waitFor(t, func() bool { return m.snapshotStatus().Reconcile != nil })
	b.mu.Lock()
	b.fail = 5
	b.mu.Unlock()
	f.put("files/a", "1")
	f.put("files/b", "2")
	f.del("files/a")
	f.put("files/c", "3")
	waitFor(t, func() bool {
		v := b.values()
		return len(v) == 2 && v["files/b"] == "2" && v["files/c"] == "3"
	})
	waitFor(t, func() bool { c, _ := f.MirrorCursor("files/"); return c == f.Revision() })
	cancel()
	<-done
	if m.snapshotStatus().LastError == "" {
		t.Fatal("the refused writes left no error in the status")
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
