// Package s3test holds the conformance checks of the mirror's S3 bucket
// (s3.Bucket, a backup.Bucket), written once and run on every S3 server
// cairn is tested against: gofakes3 in-process (internal/backup/s3) and a
// real versitygw (test/process).
package s3test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairnkv/cairn/internal/backup"
	"github.com/cairnkv/cairn/internal/backup/s3"
)

// Server is an S3 server to run the checks on.
type Server struct {
	// Client reaches the server as a user that may make buckets: the
	// checks make a bucket for each and look beneath the Bucket with it.
	Client *minio.Client
	// Open opens s3://bucketPrefix?… on the server.
	Open func(bucketPrefix string) (*s3.Bucket, error)
	// Versioning: the server keeps versions where a bucket enables them.
	Versioning bool
	// Multipart: the server takes minio-go's multipart uploads (gofakes3
	// cannot over plain HTTP: it stores the aws-chunked framing).
	Multipart bool
	// MergesMetadata: an overwrite keeps the metadata fields of the
	// object it replaces that it does not set itself (gofakes3 does; S3
	// replaces them all).
	MergesMetadata bool
}

// mirrorPrefix is the URL prefix of the checks that run under one.
const mirrorPrefix = "mirror/cluster-a"

// Conformance runs every check on srv, each in a new S3 bucket, at the
// bucket's top and under a prefix, with versioning off and (when the
// server has it) on.
func Conformance(t *testing.T, srv Server) {
	const everywhere, plain, versioned = "", "unversioned", "versioned"
	checks := []struct {
		name  string
		where string // any bucket, or only a plain or a versioned one
		check func(t *testing.T, e env)
	}{
		{"RoundTrip", everywhere, checkRoundTrip},
		{"List", everywhere, checkList},
		{"ETag", everywhere, checkETag},
		{"Delete", everywhere, checkDelete},
		{"Keys", everywhere, checkKeys},
		{"Metadata", everywhere, checkMetadata},
		{"Cancel", everywhere, checkCancel},
		{"Unversioned", plain, checkUnversioned},
		{"Versions", versioned, checkVersions},
	}
	n := 0
	for _, where := range []string{plain, versioned} {
		if where == versioned && !srv.Versioning {
			continue
		}
		for _, prefix := range []string{"", mirrorPrefix} {
			for _, c := range checks {
				if c.where != everywhere && c.where != where {
					continue
				}
				n++
				name := c.name + "/top/" + where
				if prefix != "" {
					name = c.name + "/prefix/" + where
				}
				bucket := fmt.Sprintf("conformance-%03d", n)
				t.Run(name, func(t *testing.T) {
					c.check(t, mustEnv(t, srv, bucket, prefix, where == versioned))
				})
			}
		}
	}
}

// env is one check's bucket.
type env struct {
	srv       Server
	b         *s3.Bucket
	bucket    string // the S3 bucket
	prefix    string // the URL's, "" or mirrorPrefix
	versioned bool
}

func mustEnv(t *testing.T, srv Server, bucket, prefix string, versioned bool) env {
	t.Helper()
	ctx := context.Background()
	if err := srv.Client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	if versioned {
		if err := srv.Client.EnableVersioning(ctx, bucket); err != nil {
			t.Fatal(err)
		}
	}
	bp := bucket
	if prefix != "" {
		bp += "/" + prefix
	}
	b, err := srv.Open(bp)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Options(); got.Bucket != bucket || got.Prefix != prefix {
		t.Fatalf("opened %+v for %s", got, bp)
	}
	return env{srv: srv, b: b, bucket: bucket, prefix: prefix, versioned: versioned}
}

// name is the object name of key.
func (e env) name(key string) string {
	if e.prefix == "" {
		return key
	}
	return e.prefix + "/" + key
}

// rawPut stores an object beneath the Bucket.
func (e env) rawPut(t *testing.T, name string, body []byte, opts minio.PutObjectOptions) {
	t.Helper()
	opts.DisableContentSha256 = len(body) == 0 // see s3.Bucket.PutObject
	if _, err := e.srv.Client.PutObject(context.Background(), e.bucket, name, bytes.NewReader(body), int64(len(body)), opts); err != nil {
		t.Fatal(err)
	}
}

func mustPut(t *testing.T, b backup.Bucket, key string, value []byte, meta backup.ObjectMeta) {
	t.Helper()
	if err := b.PutObject(context.Background(), key, value, meta); err != nil {
		t.Fatal(err)
	}
}

func mustDelete(t *testing.T, b backup.Bucket, key string) {
	t.Helper()
	if err := b.DeleteObject(context.Background(), key); err != nil {
		t.Fatal(err)
	}
}

func mustGet(t *testing.T, b backup.Bucket, key string) ([]byte, backup.ObjectMeta) {
	t.Helper()
	v, meta, err := b.GetObject(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return v, meta
}

func mustList(t *testing.T, b backup.Bucket, prefix string) []backup.ObjectInfo {
	t.Helper()
	var out []backup.ObjectInfo
	if err := b.ListObjects(context.Background(), prefix, func(o backup.ObjectInfo) error {
		out = append(out, o)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustVersions(t *testing.T, b backup.Bucket, prefix string) []backup.ObjectVersion {
	t.Helper()
	var out []backup.ObjectVersion
	if err := b.ListVersions(context.Background(), prefix, func(v backup.ObjectVersion) error {
		out = append(out, v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func keys[T any](xs []T, key func(T) string) []string {
	var out []string
	for _, x := range xs {
		out = append(out, key(x))
	}
	return out
}

func md5Hex(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

// sameMeta: want's fields, ModTime within a minute of now (servers
// keep it to the second).
func sameMeta(t *testing.T, what string, got, want backup.ObjectMeta) {
	t.Helper()
	mod := got.ModTime
	got.ModTime, want.ModTime = time.Time{}, time.Time{}
	if got != want {
		t.Errorf("%s: meta %+v, want %+v", what, got, want)
	}
	if d := time.Since(mod); mod.IsZero() || d < -time.Minute || d > time.Minute {
		t.Errorf("%s: ModTime %v (%v ago)", what, mod, d)
	}
}

func notExist(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s: %v, want an error that wraps fs.ErrNotExist", what, err)
	}
}

var metas = []struct {
	name string
	meta backup.ObjectMeta
}{
	{"strong", backup.ObjectMeta{Cluster: "c-7f3a", Revision: 1 << 40, Expires: time.Date(2031, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano()}},
	{"eventual", backup.ObjectMeta{Cluster: "c-7f3a", Timestamp: "1764612345678901234.0003.n2"}},
	{"none", backup.ObjectMeta{}},
	{"negative", backup.ObjectMeta{Revision: -1, Expires: -5}},
}

// A value and its metadata come back from GetObject and StatObject, and
// beneath, as the object prefix/key with x-amz-meta-cairn-* and
// Content-Type application/octet-stream.
func checkRoundTrip(t *testing.T, e env) {
	ctx := context.Background()
	for i, m := range metas {
		t.Run(m.name, func(t *testing.T) {
			key := fmt.Sprintf("rt/%s/k%d", m.name, i)
			value := []byte(fmt.Sprintf("value of %s\x00\xff", key))
			if i == 2 {
				value = nil // empty
			}
			mustPut(t, e.b, key, value, m.meta)
			got, meta := mustGet(t, e.b, key)
			if !bytes.Equal(got, value) {
				t.Errorf("get %q = %q, want %q", key, got, value)
			}
			sameMeta(t, "get", meta, m.meta)
			st, err := e.b.StatObject(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			sameMeta(t, "stat", st, m.meta)
			if st.ModTime.Sub(meta.ModTime).Abs() > time.Second {
				t.Errorf("stat ModTime %v, get %v", st.ModTime, meta.ModTime)
			}

			raw, err := e.srv.Client.StatObject(ctx, e.bucket, e.name(key), minio.StatObjectOptions{})
			if err != nil {
				t.Fatalf("the object is not at %s: %v", e.name(key), err)
			}
			if raw.ContentType != "application/octet-stream" {
				t.Errorf("Content-Type %q", raw.ContentType)
			}
			want := map[string]string{}
			if m.meta.Cluster != "" {
				want["cairn-cluster"] = m.meta.Cluster
			}
			if m.meta.Revision != 0 {
				want["cairn-revision"] = fmt.Sprint(m.meta.Revision)
			}
			if m.meta.Timestamp != "" {
				want["cairn-timestamp"] = m.meta.Timestamp
			}
			if m.meta.Expires != 0 {
				want["cairn-expires"] = fmt.Sprint(m.meta.Expires)
			}
			gotRaw := map[string]string{}
			for k, v := range raw.UserMetadata {
				gotRaw[strings.ToLower(k)] = v
			}
			if fmt.Sprint(gotRaw) != fmt.Sprint(want) {
				t.Errorf("user metadata %v (as minio-go has it: %v), want %v", gotRaw, raw.UserMetadata, want)
			}
		})
	}
	// An overwrite replaces value and metadata whole.
	mustPut(t, e.b, "rt/over", []byte("one"), metas[0].meta)
	mustPut(t, e.b, "rt/over", []byte("two"), metas[1].meta)
	got, meta := mustGet(t, e.b, "rt/over")
	if string(got) != "two" {
		t.Errorf("overwritten: %q", got)
	}
	want := metas[1].meta
	if e.srv.MergesMetadata {
		want.Revision, want.Expires = metas[0].meta.Revision, metas[0].meta.Expires
	}
	sameMeta(t, "overwritten", meta, want)
}

// ListObjects lists in key order with the URL prefix stripped, filters by
// a cairn-key prefix, skips what is beside the prefix, and stops when fn
// says so.
func checkList(t *testing.T, e env) {
	// In byte order: '-' < '/' < 'b'; a key that is also a "directory"
	// of others is avoided (versitygw's posix backend cannot hold both
	// a and a/b).
	want := []string{"a b", "a-b", "a.txt", "a/b", "a/c/d", "a/ce", "b", "bé", "b\u00ff/x", "z\u4e16"}
	for _, i := range []int{7, 2, 9, 0, 4, 1, 8, 3, 6, 5} {
		mustPut(t, e.b, want[i], []byte(want[i]), backup.ObjectMeta{Revision: int64(i + 1)})
	}
	if e.prefix != "" {
		// Beside the prefix, and the prefix's own "directory" object.
		for _, name := range []string{"mirror/cluster-ab/a", "mirror/a", "a", e.prefix + "/"} {
			e.rawPut(t, name, nil, minio.PutObjectOptions{})
		}
	}
	all := mustList(t, e.b, "")
	if got := keys(all, func(o backup.ObjectInfo) string { return o.Key }); !slices.Equal(got, want) {
		t.Fatalf("listed %q, want %q", got, want)
	}
	for _, o := range all {
		if o.Size != int64(len(o.Key)) || o.ETag != md5Hex([]byte(o.Key)) {
			t.Errorf("listed %+v, want size %d and ETag %s", o, len(o.Key), md5Hex([]byte(o.Key)))
		}
	}
	for prefix, want := range map[string][]string{
		"a/":  {"a/b", "a/c/d", "a/ce"},
		"a/c": {"a/c/d", "a/ce"},
		"b":   {"b", "bé", "b\u00ff/x"},
		"bé":  {"bé"},
		"c":   nil,
	} {
		got := keys(mustList(t, e.b, prefix), func(o backup.ObjectInfo) string { return o.Key })
		if !slices.Equal(got, want) {
			t.Errorf("list %q: %q, want %q", prefix, got, want)
		}
	}
	stop := errors.New("enough")
	var seen []string
	err := e.b.ListObjects(context.Background(), "", func(o backup.ObjectInfo) error {
		seen = append(seen, o.Key)
		if len(seen) == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || len(seen) != 3 {
		t.Errorf("stopped listing: %v after %q", err, seen)
	}
	err = e.b.ListVersions(context.Background(), "", func(backup.ObjectVersion) error { return stop })
	if !errors.Is(err, stop) {
		t.Errorf("stopped version listing: %v", err)
	}
}

// A value goes up in one PUT however large (past minio-go's 16 MiB part
// size, up to cairn's 64 MiB values), so its ETag is its MD5; a
// multipart object's ETag is not an MD5 and lists as "".
func checkETag(t *testing.T, e env) {
	big := make([]byte, 64<<20)
	for i := range big {
		big[i] = byte(i*7 + i>>13)
	}
	mustPut(t, e.b, "etag/big", big, backup.ObjectMeta{Revision: 9})
	got, meta := mustGet(t, e.b, "etag/big")
	if !bytes.Equal(got, big) {
		t.Fatalf("read back %d bytes of %d, not the same", len(got), len(big))
	}
	sameMeta(t, "big", meta, backup.ObjectMeta{Revision: 9})
	want := []backup.ObjectInfo{{Key: "etag/big", Size: int64(len(big)), ETag: md5Hex(big)}}
	if e.srv.Multipart {
		part := big[:11<<20]
		if _, err := e.srv.Client.PutObject(context.Background(), e.bucket, e.name("etag/parts"), bytes.NewReader(part), int64(len(part)),
			minio.PutObjectOptions{PartSize: 5 << 20}); err != nil {
			t.Fatal(err)
		}
		want = append(want, backup.ObjectInfo{Key: "etag/parts", Size: int64(len(part))})
	}
	if got := mustList(t, e.b, "etag/"); !slices.Equal(got, want) {
		t.Errorf("listed %+v, want %+v", got, want)
	}
}

// A deleted key is gone from GetObject, StatObject and ListObjects;
// deleting a missing key is not an error; a key never put wraps
// fs.ErrNotExist.
func checkDelete(t *testing.T, e env) {
	ctx := context.Background()
	mustPut(t, e.b, "del/a", []byte("a"), backup.ObjectMeta{})
	mustPut(t, e.b, "del/b", []byte("b"), backup.ObjectMeta{})
	mustDelete(t, e.b, "del/a")
	mustDelete(t, e.b, "del/a")
	mustDelete(t, e.b, "del/never")
	_, _, err := e.b.GetObject(ctx, "del/a")
	notExist(t, "get a deleted key", err)
	_, err = e.b.StatObject(ctx, "del/a")
	notExist(t, "stat a deleted key", err)
	_, _, err = e.b.GetObject(ctx, "del/never")
	notExist(t, "get a key never put", err)
	_, err = e.b.StatObject(ctx, "del/never")
	notExist(t, "stat a key never put", err)
	if got := mustList(t, e.b, "del/"); len(got) != 1 || got[0].Key != "del/b" {
		t.Errorf("after delete: %+v", got)
	}
	if err == nil || !strings.Contains(err.Error(), "del/never") {
		t.Errorf("the error does not name the key: %v", err)
	}
}

// CheckKey refuses what S3 cannot name, saying why, and PutObject with
// it; the longest key it takes goes up and comes back.
func checkKeys(t *testing.T, e env) {
	room := s3.MaxObjectName
	if e.prefix != "" {
		room -= len(e.prefix) + 1
	}
	// The longest key, in segments a file system takes as names
	// (versitygw's posix backend and MinIO keep an object as a file, whose
	// name is at most 255 bytes).
	longest := "long"
	for len(longest) < room {
		longest += "/" + strings.Repeat("k", min(200, room-len(longest)-1))
	}
	if len(longest) != room {
		t.Fatalf("a longest key of %d bytes, want %d", len(longest), room)
	}
	for _, c := range []struct {
		key  string
		want string // in the error; "" for a key that is fine
	}{
		{longest, ""},
		{longest + "k", fmt.Sprintf("%d bytes", room+1)},
		{strings.Repeat("é", 2048), "4096 bytes"},
		{"", "empty"},
		{"a\x00b", "NUL"},
		{"bad\xffutf8", "UTF-8"},
		{"ok/é/世界", ""},
		{"sp ace/?#%&+=;:@$", ""},
	} {
		err := e.b.CheckKey(c.key)
		if c.want == "" {
			if err != nil {
				t.Errorf("CheckKey(%.40q): %v", c.key, err)
				continue
			}
			mustPut(t, e.b, c.key, []byte(c.key), backup.ObjectMeta{})
			if got, _ := mustGet(t, e.b, c.key); string(got) != c.key {
				t.Errorf("get %.40q: %.40q", c.key, got)
			}
			continue
		}
		if !errors.Is(err, s3.ErrKey) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckKey(%.40q): %v, want s3.ErrKey saying %q", c.key, err, c.want)
		}
		if e.prefix != "" && len(c.key) > room && !strings.Contains(err.Error(), e.prefix) {
			t.Errorf("CheckKey(%.40q): %v does not name the prefix", c.key, err)
		}
		if len(err.Error()) > 300 {
			t.Errorf("CheckKey(%.40q): an error of %d bytes", c.key, len(err.Error()))
		}
		ctx := context.Background()
		if perr := e.b.PutObject(ctx, c.key, []byte("x"), backup.ObjectMeta{}); !errors.Is(perr, s3.ErrKey) || perr.Error() != err.Error() {
			t.Errorf("PutObject(%.40q): %v, want %v", c.key, perr, err)
		}
		// It cannot be there: not there, and deleted already.
		_, _, gerr := e.b.GetObject(ctx, c.key)
		_, serr := e.b.StatObject(ctx, c.key)
		for _, err := range []error{gerr, serr} {
			if !errors.Is(err, s3.ErrKey) || !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("get or stat of %.40q: %v, want s3.ErrKey and fs.ErrNotExist", c.key, err)
			}
		}
		if err := e.b.DeleteObject(ctx, c.key); err != nil {
			t.Errorf("DeleteObject(%.40q): %v", c.key, err)
		}
	}
	// Only white space is a key under a prefix, not at the bucket's top
	// (minio-go refuses the object name).
	err := e.b.CheckKey("  ")
	if e.prefix == "" {
		if !errors.Is(err, s3.ErrKey) || !strings.Contains(err.Error(), "white space") {
			t.Errorf("CheckKey of white space at the top: %v", err)
		}
	} else if err != nil {
		t.Errorf("CheckKey of white space under a prefix: %v", err)
	}
	if got := mustList(t, e.b, "long/"); len(got) != 1 || got[0].Key != longest {
		t.Errorf("listed %d keys under long/", len(got))
	}
}

// Metadata written by another S3 client, in whatever case, reads back;
// metadata that is not cairn's is an error, and so is metadata a header
// cannot carry.
func checkMetadata(t *testing.T, e env) {
	ctx := context.Background()
	e.rawPut(t, e.name("meta/upper"), []byte("v"), minio.PutObjectOptions{UserMetadata: map[string]string{
		"X-Amz-Meta-CAIRN-CLUSTER": "c1", "Cairn-Revision": "42", "cairn-EXPIRES": "7", "Other": "x"}})
	_, meta := mustGet(t, e.b, "meta/upper")
	sameMeta(t, "written in other cases", meta, backup.ObjectMeta{Cluster: "c1", Revision: 42, Expires: 7})

	e.rawPut(t, e.name("meta/bad"), []byte("v"), minio.PutObjectOptions{UserMetadata: map[string]string{"cairn-revision": "forty-two"}})
	_, _, err := e.b.GetObject(ctx, "meta/bad")
	if err == nil || !strings.Contains(err.Error(), "cairn-revision") || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a bad revision: %v", err)
	}
	if _, err := e.b.StatObject(ctx, "meta/bad"); err == nil {
		t.Errorf("stat of a bad revision: no error")
	}
	if err := e.b.PutObject(ctx, "meta/nl", []byte("v"), backup.ObjectMeta{Cluster: "a\nb"}); err == nil || !strings.Contains(err.Error(), "cairn-cluster") {
		t.Errorf("a cluster ID with a newline: %v", err)
	}
	if got := mustList(t, e.b, "meta/nl"); len(got) != 0 {
		t.Errorf("a refused put stored %+v", got)
	}
}

// Every call ends with its ctx.
func checkCancel(t *testing.T, e env) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	mustPut(t, e.b, "cancel/k", []byte("v"), backup.ObjectMeta{})
	nop := func(backup.ObjectInfo) error { return nil }
	for what, err := range map[string]error{
		"put":           e.b.PutObject(ctx, "cancel/k2", []byte("v"), backup.ObjectMeta{}),
		"get":           func() error { _, _, err := e.b.GetObject(ctx, "cancel/k"); return err }(),
		"stat":          func() error { _, err := e.b.StatObject(ctx, "cancel/k"); return err }(),
		"delete":        e.b.DeleteObject(ctx, "cancel/k"),
		"list":          e.b.ListObjects(ctx, "", nop),
		"list versions": e.b.ListVersions(ctx, "", func(backup.ObjectVersion) error { return nil }),
	} {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled ctx: %v", what, err)
		}
	}
	if got := mustList(t, e.b, "cancel/"); len(got) != 1 || got[0].Key != "cancel/k" {
		t.Errorf("after cancelled calls: %+v", got)
	}
}

// Without versioning ListVersions lists each object once, as the latest,
// and GetVersion of that version reads it.
func checkUnversioned(t *testing.T, e env) {
	mustPut(t, e.b, "v/a", []byte("a1"), backup.ObjectMeta{Revision: 1})
	mustPut(t, e.b, "v/a", []byte("a2"), backup.ObjectMeta{Revision: 2})
	mustPut(t, e.b, "v/b", []byte("b1"), backup.ObjectMeta{Revision: 3})
	mustPut(t, e.b, "v/c", []byte("c1"), backup.ObjectMeta{Revision: 4})
	mustDelete(t, e.b, "v/c")
	vs := mustVersions(t, e.b, "v/")
	if len(vs) != 2 || vs[0].Key != "v/a" || vs[1].Key != "v/b" {
		t.Fatalf("versions %+v", vs)
	}
	for _, v := range vs {
		if !v.Latest || v.Deleted || v.Size != 2 || v.ModTime.IsZero() {
			t.Errorf("version %+v", v)
		}
	}
	got, meta, err := e.b.GetVersion(context.Background(), "v/a", vs[0].VersionID)
	if err != nil || string(got) != "a2" || meta.Revision != 2 {
		t.Errorf("GetVersion(%q): %q %+v %v", vs[0].VersionID, got, meta, err)
	}
}

// With versioning, ListVersions lists a key's versions newest first, a
// delete as a delete marker, keys in order with the prefix stripped;
// GetVersion reads an older version, and putting it again undoes a delete.
func checkVersions(t *testing.T, e env) {
	ctx := context.Background()
	v1 := backup.ObjectMeta{Cluster: "c1", Revision: 10}
	v2 := backup.ObjectMeta{Cluster: "c1", Revision: 11, Expires: 99}
	mustPut(t, e.b, "ver/k", []byte("one"), v1)
	mustPut(t, e.b, "ver/k", []byte("two!"), v2)
	mustPut(t, e.b, "ver/j", []byte("j"), backup.ObjectMeta{})
	mustPut(t, e.b, "ver/k2", []byte("k2"), backup.ObjectMeta{})
	mustDelete(t, e.b, "ver/k")
	if e.prefix != "" {
		e.rawPut(t, "mirror/cluster-ab/ver/k", nil, minio.PutObjectOptions{})
	}
	_, _, err := e.b.GetObject(ctx, "ver/k")
	notExist(t, "get a key under a delete marker", err)
	_, err = e.b.StatObject(ctx, "ver/k")
	notExist(t, "stat a key under a delete marker", err)

	type row struct {
		key             string
		deleted, latest bool
		size            int64
	}
	rows := func(vs []backup.ObjectVersion) []row {
		var out []row
		for _, v := range vs {
			out = append(out, row{v.Key, v.Deleted, v.Latest, v.Size})
		}
		return out
	}
	vs := mustVersions(t, e.b, "ver/")
	want := []row{{"ver/j", false, true, 1}, {"ver/k", true, true, 0}, {"ver/k", false, false, 4}, {"ver/k", false, false, 3}, {"ver/k2", false, true, 2}}
	if !slices.Equal(rows(vs), want) {
		t.Fatalf("versions\n%+v, want\n%+v", vs, want)
	}
	ids := map[string]bool{}
	for _, v := range vs {
		if v.VersionID == "" || v.ModTime.IsZero() || ids[v.VersionID] {
			t.Errorf("version %+v", v)
		}
		ids[v.VersionID] = true
	}
	for i := 1; i < len(vs); i++ {
		if vs[i].Key == vs[i-1].Key && vs[i].ModTime.After(vs[i-1].ModTime) {
			t.Errorf("version %+v is listed after the older %+v", vs[i], vs[i-1])
		}
	}
	marker, second, first := vs[1], vs[2], vs[3]
	if got := rows(mustVersions(t, e.b, "ver/k2")); !slices.Equal(got, want[4:]) {
		t.Errorf("versions of ver/k2: %+v", got)
	}

	got, meta, err := e.b.GetVersion(ctx, "ver/k", first.VersionID)
	if err != nil || string(got) != "one" {
		t.Fatalf("the first version: %q %v", got, err)
	}
	sameMeta(t, "the first version", meta, v1)
	_, _, err = e.b.GetVersion(ctx, "ver/k", marker.VersionID)
	notExist(t, "get the delete marker", err)

	// Undo the delete: the version before it, put again.
	got, meta, err = e.b.GetVersion(ctx, "ver/k", second.VersionID)
	if err != nil || string(got) != "two!" {
		t.Fatalf("the second version: %q %v", got, err)
	}
	sameMeta(t, "the second version", meta, v2)
	meta.ModTime = time.Time{}
	mustPut(t, e.b, "ver/k", got, meta)
	got, meta = mustGet(t, e.b, "ver/k")
	if string(got) != "two!" {
		t.Errorf("undeleted: %q", got)
	}
	sameMeta(t, "undeleted", meta, v2)
	vs = mustVersions(t, e.b, "ver/k")
	want = []row{{"ver/k", false, true, 4}, {"ver/k", true, false, 0}, {"ver/k", false, false, 4}, {"ver/k", false, false, 3}, {"ver/k2", false, true, 2}}
	if !slices.Equal(rows(vs), want) {
		t.Errorf("after the undo\n%+v, want\n%+v", vs, want)
	}
	if vs[1].VersionID != marker.VersionID || vs[3].VersionID != first.VersionID {
		t.Errorf("after the undo the older versions are %+v", vs[1:4])
	}
}
