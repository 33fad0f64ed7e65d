package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/backup"
	"github.com/cairnkv/cairn/internal/httpapi"
	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

// t0 is the fakes' epoch: version i of a fake bucket is stored at t0+i min.
var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

// fakeVersion is one version of a fakeBucket's object; deleted is a
// delete marker.
type fakeVersion struct {
	id      string
	value   string
	deleted bool
	expires int64
	mod     time.Time
}

// fakeBucket is a versioned backup.Bucket in memory: versions newest
// first per key. getErr, when set, fails reads of a key.
type fakeBucket struct {
	versions map[string][]fakeVersion
	listErr  error
	getErr   func(key string) error
	gets     int
}

var _ backup.Bucket = (*fakeBucket)(nil)

// add stores a new version of key (value, or a delete marker when
// deleted) at minute min.
func (f *fakeBucket) add(key string, min int, value string, deleted bool) *fakeBucket {
	if f.versions == nil {
		f.versions = map[string][]fakeVersion{}
	}
	v := fakeVersion{id: fmt.Sprintf("%s@%d", key, min), value: value, deleted: deleted, mod: at(min)}
	f.versions[key] = append([]fakeVersion{v}, f.versions[key]...)
	return f
}

func (f *fakeBucket) PutObject(_ context.Context, key string, value []byte, meta backup.ObjectMeta) error {
	f.add(key, 0, string(value), false)
	f.versions[key][0].expires = meta.Expires
	return nil
}

func (f *fakeBucket) DeleteObject(_ context.Context, key string) error {
	f.add(key, 0, "", true)
	return nil
}

func (f *fakeBucket) read(key string, ok func(fakeVersion) bool) ([]byte, backup.ObjectMeta, error) {
	f.gets++
	if f.getErr != nil {
		if err := f.getErr(key); err != nil {
			return nil, backup.ObjectMeta{}, err
		}
	}
	for _, v := range f.versions[key] {
		if ok(v) {
			if v.deleted {
				break
			}
			return []byte(v.value), backup.ObjectMeta{Expires: v.expires, ModTime: v.mod}, nil
		}
	}
	return nil, backup.ObjectMeta{}, fmt.Errorf("fake: %s: %w", key, fs.ErrNotExist)
}

func (f *fakeBucket) GetObject(_ context.Context, key string) ([]byte, backup.ObjectMeta, error) {
	return f.read(key, func(fakeVersion) bool { return true })
}

func (f *fakeBucket) GetVersion(_ context.Context, key, id string) ([]byte, backup.ObjectMeta, error) {
	return f.read(key, func(v fakeVersion) bool { return v.id == id })
}

func (f *fakeBucket) StatObject(ctx context.Context, key string) (backup.ObjectMeta, error) {
	_, m, err := f.GetObject(ctx, key)
	return m, err
}

func (f *fakeBucket) keys(prefix string) []string {
	var keys []string
	for k := range f.versions {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func (f *fakeBucket) ListObjects(_ context.Context, prefix string, fn func(backup.ObjectInfo) error) error {
	for _, k := range f.keys(prefix) {
		if v := f.versions[k][0]; !v.deleted {
			if err := fn(backup.ObjectInfo{Key: k, Size: int64(len(v.value))}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *fakeBucket) ListVersions(_ context.Context, prefix string, fn func(backup.ObjectVersion) error) error {
	if f.listErr != nil {
		return f.listErr
	}
	for _, k := range f.keys(prefix) {
		for i, v := range f.versions[k] {
			if err := fn(backup.ObjectVersion{Key: k, VersionID: v.id, Deleted: v.deleted, Latest: i == 0, ModTime: v.mod, Size: int64(len(v.value))}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *fakeBucket) String() string { return "s3://fake/mirror" }

// fakeCluster is the cluster side of a pull in memory; putErr, when set,
// refuses puts of a key.
type fakeCluster struct {
	kv     map[string]string
	ttl    map[string]time.Duration
	putErr func(key string) error
	writes int
}

var _ pullCluster = (*fakeCluster)(nil)

func newFakeCluster(kv map[string]string) *fakeCluster {
	if kv == nil {
		kv = map[string]string{}
	}
	return &fakeCluster{kv: kv, ttl: map[string]time.Duration{}}
}

func (c *fakeCluster) List(_ context.Context, prefix string, o client.ListOptions) (*client.ListResult, error) {
	var keys []string
	for k := range c.kv {
		if strings.HasPrefix(k, prefix) && k > o.After {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	res := &client.ListResult{}
	if o.Limit > 0 && len(keys) > o.Limit {
		keys, res.More = keys[:o.Limit], true
	}
	for _, k := range keys {
		h := sha256.Sum256([]byte(c.kv[k]))
		res.Items = append(res.Items, client.Item{Key: k, Hash: "sha256:" + hex.EncodeToString(h[:])})
	}
	return res, nil
}

func (c *fakeCluster) Put(_ context.Context, key string, value []byte, o client.PutOptions) (int64, error) {
	if c.putErr != nil {
		if err := c.putErr(key); err != nil {
			return 0, err
		}
	}
	c.writes++
	c.kv[key] = string(value)
	if o.TTL > 0 {
		c.ttl[key] = o.TTL
	}
	return int64(c.writes), nil
}

func (c *fakeCluster) Delete(_ context.Context, key string, _ client.DeleteOptions) (int64, int64, error) {
	c.writes++
	if _, ok := c.kv[key]; !ok {
		return 0, int64(c.writes), nil
	}
	delete(c.kv, key)
	return 1, int64(c.writes), nil
}

// The version current at a time: the newest at or before it; a delete
// marker or no version yet is absent; with no time, the latest.
func TestMirrorAt(t *testing.T) {
	b := (&fakeBucket{}).
		add("a", 1, "a1", false).add("a", 5, "a5", false).
		add("b", 2, "b2", false).add("b", 4, "", true). // deleted at 4
		add("c", 6, "c6", false).                       // written at 6
		add("d", 1, "d1", false).add("d", 3, "", true).add("d", 7, "d7", false)
	type want struct {
		key     string
		present bool
		id      string
	}
	for _, tc := range []struct {
		name string
		at   time.Time
		want []want
	}{
		{"latest", time.Time{}, []want{{"a", true, "a@5"}, {"b", false, ""}, {"c", true, "c@6"}, {"d", true, "d@7"}}},
		{"before everything", at(0), []want{{"a", false, ""}, {"b", false, ""}, {"c", false, ""}, {"d", false, ""}}},
		{"at a version's own time", at(2), []want{{"a", true, "a@1"}, {"b", true, "b@2"}, {"c", false, ""}, {"d", true, "d@1"}}},
		{"between versions", at(3).Add(30 * time.Second), []want{{"a", true, "a@1"}, {"b", true, "b@2"}, {"c", false, ""}, {"d", false, ""}}},
		{"after the deletes", at(5), []want{{"a", true, "a@5"}, {"b", false, ""}, {"c", false, ""}, {"d", false, ""}}},
		{"after everything", at(60), []want{{"a", true, "a@5"}, {"b", false, ""}, {"c", true, "c@6"}, {"d", true, "d@7"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mirrorAt(context.Background(), b, "", tc.at)
			if err != nil {
				t.Fatal(err)
			}
			var g []want
			for _, m := range got {
				w := want{key: m.key, present: m.present}
				if m.present {
					w.id = m.versionID
				}
				g = append(g, w)
			}
			if !reflect.DeepEqual(g, tc.want) {
				t.Fatalf("got %+v, want %+v", g, tc.want)
			}
		})
	}
	// Only the keys under the prefix.
	got, err := mirrorAt(context.Background(), (&fakeBucket{}).add("app/x", 1, "x", false).add("other", 1, "o", false), "app/", time.Time{})
	if err != nil || len(got) != 1 || got[0].key != "app/x" {
		t.Fatalf("under app/: %+v, %v", got, err)
	}
}

// What a pull puts, deletes, keeps and skips, against a fake bucket and
// a fake cluster.
func TestPullPlan(t *testing.T) {
	now := at(100)
	mirror := func() *fakeBucket {
		b := (&fakeBucket{}).
			add("k/same", 1, "same", false).
			add("k/changed", 1, "old", false).add("k/changed", 5, "new", false).
			add("k/gone", 1, "g", false).add("k/gone", 5, "", true).
			add("k/late", 8, "late", false).
			add("k/ttl", 1, "t", false).
			add("k/expired", 1, "e", false)
		b.versions["k/ttl"][0].expires = now.Add(90 * time.Second).UnixNano()
		b.versions["k/expired"][0].expires = now.Add(-time.Second).UnixNano()
		return b
	}
	cluster := func() map[string]string {
		return map[string]string{"k/same": "same", "k/changed": "old", "k/gone": "g", "k/late": "late", "k/extra": "x", "other": "o"}
	}
	for _, tc := range []struct {
		name    string
		o       pullOptions
		changes string // op key,...
		after   map[string]string
		counts  [5]int // put, deleted, unchanged, expired, not deleted
	}{
		{"latest", pullOptions{prefix: "k/"}, "put k/changed,keep k/gone,put k/ttl",
			map[string]string{"k/same": "same", "k/changed": "new", "k/gone": "g", "k/late": "late", "k/extra": "x", "k/ttl": "t", "other": "o"},
			[5]int{2, 0, 2, 1, 1}},
		{"latest, delete", pullOptions{prefix: "k/", delete: true}, "put k/changed,delete k/gone,put k/ttl",
			map[string]string{"k/same": "same", "k/changed": "new", "k/late": "late", "k/extra": "x", "k/ttl": "t", "other": "o"},
			[5]int{2, 1, 2, 1, 0}},
		{"at 6, keep", pullOptions{prefix: "k/", at: at(6)}, "put k/changed,keep k/extra,keep k/gone,keep k/late,put k/ttl",
			map[string]string{"k/same": "same", "k/changed": "new", "k/gone": "g", "k/late": "late", "k/extra": "x", "k/ttl": "t", "other": "o"},
			[5]int{2, 0, 1, 1, 3}},
		{"at 6, delete", pullOptions{prefix: "k/", at: at(6), delete: true}, "put k/changed,delete k/extra,delete k/gone,delete k/late,put k/ttl",
			map[string]string{"k/same": "same", "k/changed": "new", "k/ttl": "t", "other": "o"},
			[5]int{2, 3, 1, 1, 0}},
		{"at 2, delete", pullOptions{prefix: "k/", at: at(2), delete: true}, "put k/changed,delete k/extra,delete k/late,put k/ttl",
			map[string]string{"k/same": "same", "k/changed": "old", "k/gone": "g", "k/ttl": "t", "other": "o"},
			[5]int{2, 2, 2, 1, 0}},
		{"dry run", pullOptions{prefix: "k/", at: at(6), delete: true, dryRun: true}, "put k/changed,delete k/extra,delete k/gone,delete k/late,put k/ttl",
			cluster(), [5]int{2, 3, 1, 1, 0}},
		{"every key", pullOptions{at: at(6), delete: true}, "put k/changed,delete k/extra,delete k/gone,delete k/late,put k/ttl,delete other",
			map[string]string{"k/same": "same", "k/changed": "new", "k/ttl": "t"},
			[5]int{2, 4, 1, 1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFakeCluster(cluster())
			// "at 2" sees k/changed's first version, which the cluster has
			// as "old": make it differ.
			if strings.HasPrefix(tc.name, "at 2") {
				c.kv["k/changed"] = "newer"
				tc.after["k/changed"] = "old"
			}
			var reported []string
			p := &puller{b: mirror(), c: c, now: func() time.Time { return now },
				report: func(ch pullChange) { reported = append(reported, ch.Op+" "+ch.Key) }}
			sum, err := p.pull(context.Background(), tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(reported, ","); got != tc.changes {
				t.Errorf("changes %s, want %s", got, tc.changes)
			}
			if len(sum.Changes) != len(reported) {
				t.Errorf("summary has %d changes, %d reported", len(sum.Changes), len(reported))
			}
			if got := [5]int{sum.Put, sum.Deleted, sum.Unchanged, sum.Expired, sum.NotDeleted}; got != tc.counts {
				t.Errorf("counts (put, deleted, unchanged, expired, not deleted) %v, want %v", got, tc.counts)
			}
			if !reflect.DeepEqual(c.kv, tc.after) {
				t.Errorf("cluster %v, want %v", c.kv, tc.after)
			}
			if tc.o.dryRun && c.writes != 0 {
				t.Errorf("a dry run wrote %d times", c.writes)
			}
			if !tc.o.dryRun {
				if ttl := c.ttl["k/ttl"]; ttl != 90*time.Second {
					t.Errorf("k/ttl put with ttl %v, want 1m30s", ttl)
				}
				if len(c.ttl) != 1 {
					t.Errorf("ttls %v", c.ttl)
				}
			}
		})
	}
}

// A second pull finds nothing to do.
func TestPullIdempotent(t *testing.T) {
	b := (&fakeBucket{}).add("a", 1, "1", false).add("b", 1, "2", false).add("c", 1, "", true)
	c := newFakeCluster(map[string]string{"c": "3"})
	p := &puller{b: b, c: c, now: time.Now}
	if _, err := p.pull(context.Background(), pullOptions{delete: true}); err != nil {
		t.Fatal(err)
	}
	writes := c.writes
	sum, err := p.pull(context.Background(), pullOptions{delete: true})
	if err != nil || sum.Put+sum.Deleted != 0 || sum.Unchanged != 2 || c.writes != writes {
		t.Fatalf("second pull: %+v, %v; %d writes", sum, err, c.writes-writes)
	}
}

// A refused put stops the pull and says what was done before it; a
// failed read or listing says which.
func TestPullFailures(t *testing.T) {
	b := (&fakeBucket{}).add("a", 1, "1", false).add("b", 1, "2", false).add("c", 1, "3", false)
	refused := errors.New("the value is too large")
	c := newFakeCluster(nil)
	c.putErr = func(key string) error {
		if key == "b" {
			return refused
		}
		return nil
	}
	sum, err := (&puller{b: b, c: c, now: time.Now}).pull(context.Background(), pullOptions{})
	if !errors.Is(err, refused) || !strings.Contains(err.Error(), "put b (1 bytes)") || !strings.Contains(err.Error(), "done before it: 1 put, 0 deleted; pull again") {
		t.Fatalf("error %v", err)
	}
	if sum.Put != 1 || !reflect.DeepEqual(c.kv, map[string]string{"a": "1"}) {
		t.Fatalf("summary %+v, cluster %v", sum, c.kv)
	}

	unreachable := errors.New("dial tcp: connection refused")
	_, err = (&puller{b: &fakeBucket{listErr: unreachable}, c: newFakeCluster(nil), now: time.Now}).pull(context.Background(), pullOptions{})
	if !errors.Is(err, unreachable) || !strings.Contains(err.Error(), "listing the versions in s3://fake/mirror") {
		t.Fatalf("error %v", err)
	}

	b.getErr = func(key string) error {
		if key == "a" {
			return unreachable
		}
		return nil
	}
	_, err = (&puller{b: b, c: newFakeCluster(nil), now: time.Now}).pull(context.Background(), pullOptions{})
	if !errors.Is(err, unreachable) || !strings.Contains(err.Error(), "reading a from the mirror") {
		t.Fatalf("error %v", err)
	}
}

// An object deleted between the listing and its read counts as deleted.
func TestPullGoneSinceListing(t *testing.T) {
	b := (&fakeBucket{}).add("a", 1, "1", false)
	b.getErr = func(key string) error { return fmt.Errorf("gone: %w", fs.ErrNotExist) }
	c := newFakeCluster(map[string]string{"a": "0"})
	sum, err := (&puller{b: b, c: c, now: time.Now}).pull(context.Background(), pullOptions{delete: true})
	if err != nil || sum.Deleted != 1 || len(c.kv) != 0 {
		t.Fatalf("%+v, %v, cluster %v", sum, err, c.kv)
	}
}

func TestParseAt(t *testing.T) {
	now := at(0)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"10m", now.Add(-10 * time.Minute)},
		{"2h", now.Add(-2 * time.Hour)},
		{"0s", now},
		{"2026-11-30T08:00:00Z", time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)},
		{"2026-11-30T09:00:00.5+01:00", time.Date(2026, 11, 30, 8, 0, 0, 5e8, time.UTC)},
	} {
		got, err := parseAt(tc.in, now)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parseAt(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "-5m", "2026-11-30", "10"} {
		if _, err := parseAt(bad, now); err == nil || !strings.Contains(err.Error(), "RFC 3339") {
			t.Errorf("parseAt(%q): %v", bad, err)
		}
	}
}

// Usage errors are refused before the bucket or the cluster is reached.
func TestBackupPullUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"backup", "pull"}, ExitUsage, "accepts 1 arg"},
		{[]string{"backup", "pull", "--bogus", "s3://b"}, ExitUsage, "unknown flag"},
		{[]string{"backup", "pull", "--at", "soon", "s3://b"}, ExitUsage, `--at "soon": want an RFC 3339 time`},
		{[]string{"backup", "pull", "--at", "1h", "--delete", "s3://b"}, ExitUsage, "give --prefix"},
		{[]string{"backup", "pull", "file:///tmp/x"}, ExitUsage, "want s3://bucket/prefix"},
		{[]string{"backup", "pull", "s3://bucket-x?nonsense=1"}, ExitUsage, `unknown parameter "nonsense"`},
	} {
		code, _, errOut := run(t, "", append([]string{"--endpoints=http://127.0.0.1:1"}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("cairn %v: exit %d (want %d), stderr %q (want %q)", tc.args, code, tc.code, errOut, tc.msg)
		}
	}
}

// mustMirrorS3 starts an in-process S3 server (gofakes3 over real HTTP on
// loopback) with a bucket "mirror" (versioning enabled or not), and returns the URL of its
// prefix cl1 and the backup.Bucket that writes the mirror's objects there.
// The s3:// scheme reads its credentials from the environment.
func mustMirrorS3(t *testing.T, versioned bool) (string, backup.Bucket) {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", "test-key-id")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	srv := httptest.NewServer(gofakes3.New(s3mem.New(), gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	mc, err := minio.New(host, &minio.Options{Creds: credentials.NewStaticV4("test-key-id", "test-secret", ""), BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := mc.MakeBucket(ctx, "mirror", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	if versioned {
		if err := mc.EnableVersioning(ctx, "mirror"); err != nil {
			t.Fatal(err)
		}
	}
	raw := "s3://mirror/cl1?endpoint=" + host + "&path_style=true&insecure=true"
	b, err := backup.ParseBucket(raw)
	if err != nil {
		t.Fatal(err)
	}
	return raw, b
}

// mark is a time strictly between the versions written before it and
// those written after (the bucket lists times to the millisecond).
func mark() time.Time {
	time.Sleep(5 * time.Millisecond)
	t := time.Now()
	time.Sleep(5 * time.Millisecond)
	return t
}

func mustPutObject(t *testing.T, b backup.Bucket, key, value string, expires time.Time) {
	t.Helper()
	meta := backup.ObjectMeta{Cluster: "old-cluster", Revision: 7}
	if !expires.IsZero() {
		meta.Expires = expires.UnixNano()
	}
	if err := b.PutObject(context.Background(), key, []byte(value), meta); err != nil {
		t.Fatal(err)
	}
}

// mustPull runs cairn backup pull -o json and returns its summary.
func mustPull(t *testing.T, ep string, args ...string) pullSummary {
	t.Helper()
	code, out, errOut := run(t, "", append([]string{ep, "-o", "json", "backup", "pull"}, args...)...)
	if code != ExitOK {
		t.Fatalf("cairn backup pull %v: exit %d, stderr %s", args, code, errOut)
	}
	var s pullSummary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("cairn backup pull %v: %v in %s", args, err, out)
	}
	return s
}

func wantPulled(t *testing.T, what string, s pullSummary, put, deleted, unchanged, expired, notDeleted int) {
	t.Helper()
	if s.Put != put || s.Deleted != deleted || s.Unchanged != unchanged || s.Expired != expired || s.NotDeleted != notDeleted {
		t.Fatalf("%s: put %d, deleted %d, unchanged %d, expired %d, not deleted %d; want %d, %d, %d, %d, %d (%+v)", what,
			s.Put, s.Deleted, s.Unchanged, s.Expired, s.NotDeleted, put, deleted, unchanged, expired, notDeleted, s)
	}
}

func wantKeys(t *testing.T, svc *kv.Service, prefix string, want map[string]string) {
	t.Helper()
	if got := mustKeys(t, svc, prefix); !reflect.DeepEqual(got, want) {
		t.Fatalf("keys under %q: %v, want %v", prefix, got, want)
	}
}

// backup pull against a versioned bucket in gofakes3 over HTTP, through
// the s3:// Bucket: the latest versions, with and without --delete, at a
// time before later writes, --dry-run, and the output in text and JSON.
func TestBackupPullS3(t *testing.T) {
	raw, b := mustMirrorS3(t, true)
	ep, _, svc := realAPI(t)
	ctx := context.Background()

	mustPutObject(t, b, "app/a", "a1", time.Time{})
	mustPutObject(t, b, "app/b", "b1", time.Time{})
	mustPutObject(t, b, "app/c", "c1", time.Time{})
	t1 := mark()
	mustPutObject(t, b, "app/a", "a2", time.Time{})
	if err := b.DeleteObject(ctx, "app/b"); err != nil {
		t.Fatal(err)
	}
	mustPutObject(t, b, "app/d", "d2", time.Time{})
	mustPutObject(t, b, "app/e", "expired", time.Now().Add(-time.Minute))
	mustPutObject(t, b, "app/f", "ttl", time.Now().Add(time.Hour))

	// The cluster restored from a snapshot taken before the later writes,
	// then app/c deleted by mistake; app/x was never mirrored.
	for k, v := range map[string]string{"app/a": "a1", "app/b": "b1", "app/x": "x", "other/y": "y"} {
		if _, err := svc.Put(kvtest.Ctx(t), k, []byte(v), kv.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// --dry-run: the plan, and no change.
	before := kvtest.MustRevision(t, svc)
	code, out, errOut := run(t, "", ep, "backup", "pull", "--dry-run", raw)
	want := "put app/a (2 bytes)\nkeep app/b (not in the mirror: would delete with --delete)\nput app/c (2 bytes)\nput app/d (2 bytes)\n"
	if code != ExitOK || !strings.HasPrefix(out, want) || !strings.Contains(out, "\nput app/f (3 bytes, ttl 59m5") ||
		!strings.HasSuffix(out, "\npulled: 4 put, 0 deleted, 0 unchanged, 1 skipped (expired)\nkept 1 key that the mirror has not: would delete with --delete\ndry run: nothing was changed\n") {
		t.Fatalf("dry run: exit %d, stdout\n%s\nstderr %s", code, out, errOut)
	}
	if after := kvtest.MustRevision(t, svc); after != before {
		t.Fatalf("--dry-run changed the revision from %d to %d", before, after)
	}

	// The latest versions: app/b stays without --delete, app/e has expired,
	// app/f keeps the rest of its hour.
	wantPulled(t, "latest", mustPull(t, ep, raw), 4, 0, 0, 1, 1)
	wantKeys(t, svc, "", map[string]string{"app/a": "a2", "app/b": "b1", "app/c": "c1", "app/d": "d2", "app/f": "ttl", "app/x": "x", "other/y": "y"})
	f, err := svc.Get(kvtest.Ctx(t), "app/f", kv.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(time.Unix(0, f.Expires)); left < 58*time.Minute || left > time.Hour {
		t.Fatalf("app/f expires in %v, want about 1h", left)
	}

	// Again: nothing to do.
	rev := kvtest.MustRevision(t, svc)
	code, out, _ = run(t, "", ep, "backup", "pull", raw)
	if code != ExitOK || out != "keep app/b (not in the mirror: would delete with --delete)\npulled: 0 put, 0 deleted, 4 unchanged, 1 skipped (expired)\nkept 1 key that the mirror has not: would delete with --delete\n" {
		t.Fatalf("again: exit %d, stdout\n%s", code, out)
	}
	if kvtest.MustRevision(t, svc) != rev {
		t.Fatal("a pull with nothing to do wrote")
	}

	// --delete: the mirror's delete marker deletes app/b; app/x, which the
	// mirror never had, stays without --at.
	code, out, _ = run(t, "", ep, "backup", "pull", "--delete", raw)
	if code != ExitOK || out != "delete app/b\npulled: 0 put, 1 deleted, 4 unchanged, 1 skipped (expired)\n" {
		t.Fatalf("--delete: exit %d, stdout\n%s", code, out)
	}
	wantKeys(t, svc, "app/", map[string]string{"app/a": "a2", "app/c": "c1", "app/d": "d2", "app/f": "ttl", "app/x": "x"})

	// --at t1 without --delete: the old values only.
	at1 := t1.UTC().Format(time.RFC3339Nano)
	s := mustPull(t, ep, "--at", at1, "--prefix", "app/", raw)
	wantPulled(t, "--at", s, 2, 0, 1, 0, 3)
	if s.At == nil || !s.At.Equal(t1) || s.Prefix != "app/" || s.DryRun {
		t.Fatalf("--at summary %+v", s)
	}
	wantKeys(t, svc, "app/", map[string]string{"app/a": "a1", "app/b": "b1", "app/c": "c1", "app/d": "d2", "app/f": "ttl", "app/x": "x"})

	// --at t1 --delete: exactly the mirror as it was at t1 (app/d and app/f
	// were not written yet, app/x was never there); other/ is not touched.
	s = mustPull(t, ep, "--at", at1, "--prefix", "app/", "--delete", raw)
	wantPulled(t, "--at --delete", s, 0, 3, 3, 0, 0)
	wantChanges := `[{"op":"delete","key":"app/d"},{"op":"delete","key":"app/f"},{"op":"delete","key":"app/x"}]`
	if b, _ := json.Marshal(s.Changes); string(b) != wantChanges {
		t.Fatalf("changes %s, want %s", b, wantChanges)
	}
	wantKeys(t, svc, "", map[string]string{"app/a": "a1", "app/b": "b1", "app/c": "c1", "other/y": "y"})

	// A duration ago: now, as the latest.
	s = mustPull(t, ep, "--at", "0s", "--prefix", "app/", "--delete", "--dry-run", raw)
	wantPulled(t, "--at 0s", s, 3, 1, 1, 1, 0)
	wantKeys(t, svc, "", map[string]string{"app/a": "a1", "app/b": "b1", "app/c": "c1", "other/y": "y"})
}

// A put the cluster refuses stops the pull, which says what it had done;
// an unreachable bucket is a clear error.
func TestBackupPullS3Failures(t *testing.T) {
	raw, b := mustMirrorS3(t, true)
	ep, _, svc := realAPIWith(t, httpapi.Options{MaxValueBytes: 8 << 10})
	mustPutObject(t, b, "big/a", "small", time.Time{})
	mustPutObject(t, b, "big/b", strings.Repeat("B", 20<<10), time.Time{})
	mustPutObject(t, b, "big/c", "small", time.Time{})
	code, _, errOut := run(t, "", ep, "backup", "pull", raw)
	if code != ExitError || !strings.Contains(errOut, "backup pull: put big/b (20480 bytes): ") || !strings.Contains(errOut, "limit is 8192") ||
		!strings.Contains(errOut, "done before it: 1 put, 0 deleted; pull again to finish") {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	wantKeys(t, svc, "big/", map[string]string{"big/a": "small"})

	// -o json says the same, with the summary of what was done.
	code, out, _ := run(t, "", ep, "-o", "json", "backup", "pull", raw)
	var s pullSummary
	if err := json.Unmarshal([]byte(out), &s); code != ExitError || err != nil || s.Unchanged != 1 || !strings.Contains(s.Error, "put big/b") {
		t.Fatalf("json: exit %d, %v, %s", code, err, out)
	}

	dead := "s3://mirror/cl1?endpoint=127.0.0.1:1&path_style=true&insecure=true"
	code, _, errOut = run(t, "", ep, "backup", "pull", dead)
	if code != ExitError || !strings.Contains(errOut, "backup pull: listing the versions in s3://mirror/cl1") || !strings.Contains(errOut, "connection refused") {
		t.Fatalf("unreachable: exit %d, stderr %s", code, errOut)
	}
}

// A bucket without versioning keeps no old versions: a key written after
// --at is left alone, not deleted, since what it was then is not known.
func TestPullUnversioned(t *testing.T) {
	b := (&fakeBucket{}).add("u", 8, "u8", false).add("v", 1, "v1", false)
	b.versions["u"][0].id = "null"
	b.versions["v"][0].id = "null"
	c := newFakeCluster(map[string]string{"u": "u0", "v": "v0", "w": "w0"})
	var reported []string
	p := &puller{b: b, c: c, now: time.Now, report: func(ch pullChange) { reported = append(reported, ch.Op+" "+ch.Key) }}
	sum, err := p.pull(context.Background(), pullOptions{at: at(6), delete: true})
	if err != nil || sum.Unknown != 1 || sum.Put != 1 || sum.Deleted != 1 {
		t.Fatalf("%+v, %v", sum, err)
	}
	if got := strings.Join(reported, ","); got != "unknown u,put v,delete w" {
		t.Fatalf("changes %s", got)
	}
	if !reflect.DeepEqual(c.kv, map[string]string{"u": "u0", "v": "v1"}) {
		t.Fatalf("cluster %v", c.kv)
	}
}

// The same against gofakes3 without versioning, through the s3:// Bucket.
func TestBackupPullS3Unversioned(t *testing.T) {
	raw, b := mustMirrorS3(t, false)
	ep, _, svc := realAPI(t)
	mustPutObject(t, b, "app/a", "a1", time.Time{})
	t1 := mark()
	mustPutObject(t, b, "app/a", "a2", time.Time{})
	mustPutObject(t, b, "app/b", "b2", time.Time{})
	for k, v := range map[string]string{"app/b": "b0", "app/x": "x"} {
		if _, err := svc.Put(kvtest.Ctx(t), k, []byte(v), kv.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := run(t, "", ep, "backup", "pull", "--at", t1.Format(time.RFC3339Nano), "--prefix", "app/", "--delete", raw)
	want := "leave app/b (the bucket kept no version of it from then: it is not versioned)\ndelete app/x\n" +
		"pulled: 0 put, 1 deleted, 0 unchanged, 0 skipped (expired)\nleft 1 key alone: the bucket kept no version of them from then (versioning is off)\n"
	if code != ExitOK || out != want {
		t.Fatalf("exit %d, stdout\n%s\nwant\n%s\nstderr %s", code, out, want, errOut)
	}
	wantKeys(t, svc, "app/", map[string]string{"app/b": "b0"})
	wantPulled(t, "latest", mustPull(t, ep, raw), 2, 0, 0, 0, 0)
	wantKeys(t, svc, "app/", map[string]string{"app/a": "a2", "app/b": "b2"})
}

// --undelete puts back each key whose latest version is a delete marker
// from its newest value, by the versions' order and not their times (the
// times here are versitygw's: a marker dated before the value it
// replaced), and leaves keys the cluster holds again alone.
func TestPullUndelete(t *testing.T) {
	b := (&fakeBucket{}).
		add("k/gone", 9, "g", false).add("k/gone", 2, "", true).
		add("k/two", 8, "v1", false).add("k/two", 9, "v2", false).add("k/two", 1, "", true).
		add("k/again", 9, "old", false).add("k/again", 2, "", true).
		add("k/live", 1, "l", false).
		add("k/twice", 9, "t", false).add("k/twice", 3, "", true).add("k/twice", 2, "", true)
	c := newFakeCluster(map[string]string{"k/again": "new", "k/live": "l"})
	var reported []string
	p := &puller{b: b, c: c, now: func() time.Time { return at(100) },
		report: func(ch pullChange) { reported = append(reported, ch.Op+" "+ch.Key) }}
	if _, err := p.pull(context.Background(), pullOptions{prefix: "k/", undelete: true}); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(reported, ","), "put k/gone,put k/twice,put k/two"; got != want {
		t.Fatalf("changes %s, want %s", got, want)
	}
	want := map[string]string{"k/gone": "g", "k/two": "v2", "k/twice": "t", "k/again": "new", "k/live": "l"}
	if !reflect.DeepEqual(c.kv, want) {
		t.Fatalf("cluster %v, want %v", c.kv, want)
	}
}
