package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/minio/minio-go/v7"

	"github.com/cairnkv/cairn/internal/backup"
)

var (
	// ErrKey is what CheckKey (and PutObject) wrap when a cairn key cannot
	// be an S3 object name.
	ErrKey  = errors.New("s3: key cannot be mirrored")
	errMeta = errors.New("s3: bad cairn metadata")
)

// MaxObjectName is the longest S3 object name, in bytes of UTF-8: the
// URL's prefix, a slash and the cairn key together.
const MaxObjectName = 1024

// The user metadata a mirrored object carries (x-amz-meta-cairn-*). S3
// header names are case-insensitive and minio-go hands them back
// canonicalised (Cairn-Cluster), so they are read back without regard to
// case.
const (
	metaCluster   = "cairn-cluster"
	metaRevision  = "cairn-revision"
	metaTimestamp = "cairn-timestamp"
	metaExpires   = "cairn-expires"
)

var _ backup.Bucket = (*Bucket)(nil)

// Bucket is a backup.Bucket in S3, for the continuous mirror of a
// keyspace: one object per cairn key, named URL prefix + "/" + key, the
// value its body and backup.ObjectMeta its user metadata. Each value goes
// up in a single PUT, so an object's ETag is the MD5 of its value.
type Bucket struct {
	opts   Options
	client *minio.Client
}

// OpenBucket parses raw (s3://bucket/prefix?…, as ParseURL reads it) and
// makes its client with the credentials Open takes. It does not reach the
// server.
func OpenBucket(raw string, getenv func(string) string) (*Bucket, error) {
	t, err := Open(raw, getenv)
	if err != nil {
		return nil, err
	}
	return &Bucket{opts: t.opts, client: t.client}, nil
}

func (b *Bucket) String() string { return b.opts.String() }

// Options returns what the bucket's URL said.
func (b *Bucket) Options() Options { return b.opts }

// object is key's object name.
func (b *Bucket) object(key string) string {
	if b.opts.Prefix == "" {
		return key
	}
	return b.opts.Prefix + "/" + key
}

// listPrefix is the object name prefix of the cairn keys that start with
// prefix.
func (b *Bucket) listPrefix(prefix string) string {
	if b.opts.Prefix == "" {
		return prefix
	}
	return b.opts.Prefix + "/" + prefix
}

// CheckKey says why key cannot be mirrored into the bucket, or returns
// nil. Cairn keys are any non-empty string without NUL up to 4 KiB; an S3
// object name is at most 1024 bytes of UTF-8 with the prefix, and
// minio-go refuses a name that is only white space.
func (b *Bucket) CheckKey(key string) error {
	name := b.object(key)
	switch {
	case key == "":
		return fmt.Errorf("%w: the key is empty", ErrKey)
	case strings.IndexByte(key, 0) >= 0:
		return fmt.Errorf("%w: %s has a NUL byte", ErrKey, quoteKey(key))
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: %s is not valid UTF-8 (S3 object names are UTF-8)", ErrKey, quoteKey(key))
	case len(name) > MaxObjectName && b.opts.Prefix != "":
		return fmt.Errorf("%w: %s is %d bytes, %d with the prefix %q: S3 object names are at most %d", ErrKey, quoteKey(key), len(key), len(name), b.opts.Prefix+"/", MaxObjectName)
	case len(name) > MaxObjectName:
		return fmt.Errorf("%w: %s is %d bytes: S3 object names are at most %d", ErrKey, quoteKey(key), len(key), MaxObjectName)
	case strings.TrimSpace(name) == "":
		return fmt.Errorf("%w: %s is only white space, which minio-go refuses as an object name (a bucket URL with a prefix takes it)", ErrKey, quoteKey(key))
	}
	return nil
}

// quoteKey quotes key for an error, its first 64 bytes or so when it is
// long.
func quoteKey(key string) string {
	const limit = 64
	if len(key) <= limit {
		return fmt.Sprintf("key %q", key)
	}
	n := limit
	for n > limit-utf8.UTFMax && !utf8.RuneStart(key[n]) {
		n--
	}
	return fmt.Sprintf("key %q… (%d bytes)", key[:n], len(key))
}

// opContext bounds one request: by ctx's deadline, else by opTimeout.
func opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, opTimeout)
}

// PutObject uploads value in a single PUT, whatever its size (cairn values
// are at most 64 MiB; S3 takes 5 GiB in one), with its MD5 for the server
// to check, so the object appears whole or not at all and its ETag is
// the value's MD5. A key CheckKey refuses is refused with its error.
func (b *Bucket) PutObject(ctx context.Context, key string, value []byte, meta backup.ObjectMeta) error {
	if err := b.CheckKey(key); err != nil {
		return err
	}
	um, err := userMetadata(meta)
	if err != nil {
		return fmt.Errorf("s3: put %s: %w", quoteKey(key), err)
	}
	ctx, cancel := opContext(ctx)
	defer cancel()
	// Over plain HTTP minio-go signs the body in aws-chunked framing, and
	// sends an empty one with Transfer-Encoding: chunked, which S3 servers
	// refuse for want of a Content-Length (gofakes3 does): an empty value
	// goes unsigned (its Content-MD5 still is).
	_, err = b.client.PutObject(ctx, b.opts.Bucket, b.object(key), bytes.NewReader(value), int64(len(value)), minio.PutObjectOptions{
		ContentType: "application/octet-stream", UserMetadata: um, DisableMultipart: true, SendContentMd5: true,
		DisableContentSha256: len(value) == 0})
	if err != nil {
		return fmt.Errorf("s3: put %s in %s: %w", quoteKey(key), b, err)
	}
	return nil
}

// DeleteObject removes key (in a versioned bucket: puts a delete marker
// on it); a missing key is not an error, as S3 has it, nor is a key
// CheckKey refuses (it cannot be there).
func (b *Bucket) DeleteObject(ctx context.Context, key string) error {
	if b.CheckKey(key) != nil {
		return nil
	}
	ctx, cancel := opContext(ctx)
	defer cancel()
	err := b.client.RemoveObject(ctx, b.opts.Bucket, b.object(key), minio.RemoveObjectOptions{})
	if err != nil && minio.ToErrorResponse(err).Code != minio.NoSuchKey {
		return fmt.Errorf("s3: delete %s in %s: %w", quoteKey(key), b, err)
	}
	return nil
}

// GetObject reads key's current value; a missing or deleted key wraps
// fs.ErrNotExist, and so does a key CheckKey refuses (with its error).
func (b *Bucket) GetObject(ctx context.Context, key string) ([]byte, backup.ObjectMeta, error) {
	return b.get(ctx, key, "")
}

// GetVersion reads one version of key; a missing version, or one that is
// a delete marker, wraps fs.ErrNotExist. The version ID "" is the
// current version: what a server without versioning may list (gofakes3
// does; AWS lists "null", which it reads back).
func (b *Bucket) GetVersion(ctx context.Context, key, versionID string) ([]byte, backup.ObjectMeta, error) {
	return b.get(ctx, key, versionID)
}

func (b *Bucket) get(ctx context.Context, key, versionID string) ([]byte, backup.ObjectMeta, error) {
	if err := b.CheckKey(key); err != nil {
		return nil, backup.ObjectMeta{}, fmt.Errorf("%w: %w", err, fs.ErrNotExist)
	}
	ctx, cancel := opContext(ctx)
	defer cancel()
	// Core's GetObject is one GET, whose headers are the metadata of the
	// body it carries (Client's is lazy, and its Stat is a HEAD of its
	// own: another version's metadata should the key change between).
	body, info, _, err := minio.Core{Client: b.client}.GetObject(ctx, b.opts.Bucket, b.object(key), minio.GetObjectOptions{VersionID: versionID})
	if err != nil {
		return nil, backup.ObjectMeta{}, b.readErr("get", key, versionID, err)
	}
	defer body.Close()
	value, err := io.ReadAll(body)
	if err == nil && int64(len(value)) != info.Size {
		err = fmt.Errorf("read %d bytes of %d", len(value), info.Size)
	}
	if err != nil {
		return nil, backup.ObjectMeta{}, fmt.Errorf("s3: get %s in %s: %w", quoteKey(key), b, err)
	}
	meta, err := readMeta(info)
	if err != nil {
		return nil, backup.ObjectMeta{}, fmt.Errorf("s3: get %s in %s: %w", quoteKey(key), b, err)
	}
	return value, meta, nil
}

// StatObject is GetObject's metadata only (a HEAD).
func (b *Bucket) StatObject(ctx context.Context, key string) (backup.ObjectMeta, error) {
	if err := b.CheckKey(key); err != nil {
		return backup.ObjectMeta{}, fmt.Errorf("%w: %w", err, fs.ErrNotExist)
	}
	ctx, cancel := opContext(ctx)
	defer cancel()
	info, err := b.client.StatObject(ctx, b.opts.Bucket, b.object(key), minio.StatObjectOptions{})
	if err != nil {
		return backup.ObjectMeta{}, b.readErr("stat", key, "", err)
	}
	meta, err := readMeta(info)
	if err != nil {
		return backup.ObjectMeta{}, fmt.Errorf("s3: stat %s in %s: %w", quoteKey(key), b, err)
	}
	return meta, nil
}

// readErr is a failed GET or HEAD of key: fs.ErrNotExist when there is
// no such key or version, or the version asked for is a delete marker
// (S3 answers 405 to a GET of one).
func (b *Bucket) readErr(op, key, versionID string, err error) error {
	what := quoteKey(key)
	if versionID != "" {
		what = "version " + versionID + " of " + what
	}
	switch minio.ToErrorResponse(err).Code {
	case minio.NoSuchKey, minio.NoSuchVersion:
		return fmt.Errorf("s3: %s %s in %s: %w", op, what, b, fs.ErrNotExist)
	case minio.MethodNotAllowed:
		if versionID != "" {
			return fmt.Errorf("s3: %s %s in %s: a delete marker: %w", op, what, b, fs.ErrNotExist)
		}
	}
	return fmt.Errorf("s3: %s %s in %s: %w", op, what, b, err)
}

// ListObjects calls fn for the current objects whose keys start with
// prefix, in key order (S3 lists in byte order of UTF-8, which is Go's
// string order), until fn returns an error.
func (b *Bucket) ListObjects(ctx context.Context, prefix string, fn func(backup.ObjectInfo) error) error {
	ctx, cancel := opContext(ctx)
	defer cancel() // also ends the listing when fn stops it
	for o := range b.client.ListObjectsIter(ctx, b.opts.Bucket, minio.ListObjectsOptions{Prefix: b.listPrefix(prefix), Recursive: true}) {
		if o.Err != nil {
			return fmt.Errorf("s3: list %s in %s: %w", strconv.Quote(prefix), b, o.Err)
		}
		key, ok := b.cairnKey(o.Key)
		if !ok {
			continue
		}
		if err := fn(backup.ObjectInfo{Key: key, Size: o.Size, ETag: md5ETag(o.ETag)}); err != nil {
			return err
		}
	}
	// minio-go ends a listing whose ctx is done without a word.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3: list %s in %s: %w", strconv.Quote(prefix), b, err)
	}
	return nil
}

// cairnKey is the cairn key of an object name listed under the prefix;
// not ok for the prefix's own "directory" object (prefix/).
func (b *Bucket) cairnKey(name string) (string, bool) {
	key := name
	if b.opts.Prefix != "" {
		var ok bool
		if key, ok = strings.CutPrefix(name, b.opts.Prefix+"/"); !ok {
			return "", false
		}
	}
	return key, key != ""
}

// ListVersions calls fn for every version of the objects whose keys start
// with prefix, delete markers included, in key order and newest first
// within a key, until fn returns an error.
//
// It holds the whole listing (a few hundred bytes a version) to put it in
// that order, which S3 servers do not all list in: versitygw lists each
// page's delete markers before its versions, gofakes3 a key's versions
// oldest first. Within a key the latest comes first, then the rest by
// time, newest first; versions of the same time keep the server's order
// (reversed when it lists the latest last).
func (b *Bucket) ListVersions(ctx context.Context, prefix string, fn func(backup.ObjectVersion) error) error {
	ctx, cancel := opContext(ctx)
	defer cancel()
	var all []backup.ObjectVersion
	for o := range b.client.ListObjectsIter(ctx, b.opts.Bucket, minio.ListObjectsOptions{Prefix: b.listPrefix(prefix), Recursive: true, WithVersions: true}) {
		if o.Err != nil {
			return fmt.Errorf("s3: list versions %s in %s: %w", strconv.Quote(prefix), b, o.Err)
		}
		if key, ok := b.cairnKey(o.Key); ok {
			all = append(all, backup.ObjectVersion{Key: key, VersionID: o.VersionID, Deleted: o.IsDeleteMarker,
				Latest: o.IsLatest, ModTime: o.LastModified, Size: o.Size})
		}
	}
	// minio-go ends a listing whose ctx is done without a word.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3: list versions %s in %s: %w", strconv.Quote(prefix), b, err)
	}
	slices.SortStableFunc(all, func(x, y backup.ObjectVersion) int { return strings.Compare(x.Key, y.Key) })
	for len(all) > 0 {
		n := 1
		for n < len(all) && all[n].Key == all[0].Key {
			n++
		}
		same := all[:n]
		all = all[n:]
		if i := slices.IndexFunc(same, func(v backup.ObjectVersion) bool { return v.Latest }); i > 0 && i == len(same)-1 {
			slices.Reverse(same)
		}
		slices.SortStableFunc(same, func(x, y backup.ObjectVersion) int {
			switch {
			case x.Latest && !y.Latest:
				return -1
			case y.Latest && !x.Latest:
				return 1
			}
			return y.ModTime.Compare(x.ModTime)
		})
		for _, v := range same {
			if err := fn(v); err != nil {
				return err
			}
		}
	}
	return nil
}

// md5ETag is etag as a lowercase hex MD5, or "" when it is not one (a
// multipart upload's ETag is an MD5 of MD5s with -N after it).
func md5ETag(etag string) string {
	etag = strings.ToLower(strings.Trim(etag, `"`))
	if len(etag) != 32 {
		return ""
	}
	for _, c := range []byte(etag) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return ""
		}
	}
	return etag
}

// userMetadata is meta as x-amz-meta-cairn-* (minio-go adds the
// x-amz-meta-), empty and zero fields left out. HTTP header values must
// be printable ASCII to come back as they went.
func userMetadata(meta backup.ObjectMeta) (map[string]string, error) {
	m := map[string]string{}
	for k, v := range map[string]string{metaCluster: meta.Cluster, metaTimestamp: meta.Timestamp} {
		if v == "" {
			continue
		}
		if i := strings.IndexFunc(v, func(r rune) bool { return r < ' ' || r > '~' }); i >= 0 {
			return nil, fmt.Errorf("%w: %s %q: want printable ASCII", errMeta, k, v)
		}
		m[k] = v
	}
	if meta.Revision != 0 {
		m[metaRevision] = strconv.FormatInt(meta.Revision, 10)
	}
	if meta.Expires != 0 {
		m[metaExpires] = strconv.FormatInt(meta.Expires, 10)
	}
	return m, nil
}

// readMeta is the backup.ObjectMeta of an object's info.
func readMeta(info minio.ObjectInfo) (backup.ObjectMeta, error) {
	get := func(name string) string {
		for k, v := range info.UserMetadata {
			if strings.EqualFold(k, name) {
				return v
			}
		}
		return ""
	}
	meta := backup.ObjectMeta{Cluster: get(metaCluster), Timestamp: get(metaTimestamp), ModTime: info.LastModified}
	for name, p := range map[string]*int64{metaRevision: &meta.Revision, metaExpires: &meta.Expires} {
		v := get(name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return backup.ObjectMeta{}, fmt.Errorf("%w: x-amz-meta-%s %q: want an integer", errMeta, name, v)
		}
		*p = n
	}
	return meta, nil
}
