package backup

import (
	"context"
	"fmt"
	"net/url"
	"time"
)

// Bucket is where the continuous mirror of a keyspace keeps one object per
// key (package backup/mirror): the object's name is the cairn key (under
// the URL's prefix, which the Bucket adds and strips), its body the value,
// its metadata where it came from. Each kind lives in its own package and
// registers its scheme (RegisterBucketScheme); package backup depends on
// none of them.
type Bucket interface {
	// PutObject stores value under key with meta, whole or not at all.
	PutObject(ctx context.Context, key string, value []byte, meta ObjectMeta) error
	// DeleteObject removes key; removing a missing key is not an error.
	DeleteObject(ctx context.Context, key string) error
	// GetObject reads key back; a missing key is an error that wraps
	// fs.ErrNotExist.
	GetObject(ctx context.Context, key string) ([]byte, ObjectMeta, error)
	// StatObject is GetObject's metadata only.
	StatObject(ctx context.Context, key string) (ObjectMeta, error)
	// ListObjects calls fn for every object whose key starts with prefix,
	// in key order, until fn returns an error (which it returns).
	ListObjects(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// ListVersions calls fn for every version of every object whose key
	// starts with prefix (delete markers included), in key order and
	// newest first within a key; a bucket without versioning lists each
	// object's only version.
	ListVersions(ctx context.Context, prefix string, fn func(ObjectVersion) error) error
	// GetVersion reads one version of key.
	GetVersion(ctx context.Context, key, versionID string) ([]byte, ObjectMeta, error)
	// String is the bucket's URL, without secrets.
	String() string
}

// ObjectMeta is what a mirrored object carries beside its value, as
// object metadata (x-amz-meta-cairn-*).
type ObjectMeta struct {
	// Cluster is the ID of the cluster that wrote the object.
	Cluster string
	// Revision is a strong key's mod revision (0 for eventual keys).
	Revision int64
	// Timestamp is an eventual key's hybrid logical clock stamp ("" for
	// strong keys).
	Timestamp string
	// Expires is when the key expires (unix ns), 0 if never.
	Expires int64
	// ModTime is when the bucket stored the object (read only).
	ModTime time.Time
}

// ObjectInfo is one object as a bucket lists it.
type ObjectInfo struct {
	Key  string
	Size int64
	// ETag is the hex MD5 of the body when the bucket says so (a single
	// PUT); "" when it is something else (a multipart upload's).
	ETag string
}

// ObjectVersion is one version of an object as a versioned bucket lists
// it.
type ObjectVersion struct {
	Key       string
	VersionID string
	// Deleted: a delete marker, not a value.
	Deleted bool
	// Latest: the object's current version.
	Latest  bool
	ModTime time.Time
	Size    int64
}

var bucketSchemes = map[string]func(raw string) (Bucket, error){}

// RegisterBucketScheme makes ParseBucket open scheme:// URLs with open.
func RegisterBucketScheme(scheme string, open func(raw string) (Bucket, error)) {
	if _, dup := bucketSchemes[scheme]; dup {
		panic("backup: bucket scheme " + scheme + " registered twice")
	}
	bucketSchemes[scheme] = open
}

// ParseBucket opens a mirror bucket URL (s3://bucket/prefix?…, package
// internal/backup/s3). It does not reach the server.
func ParseBucket(raw string) (Bucket, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("backup: mirror: %w", err)
	}
	if open, ok := bucketSchemes[u.Scheme]; ok {
		return open(raw)
	}
	if u.Scheme == "s3" {
		return nil, fmt.Errorf("backup: mirror %q: this program is built without s3:// buckets (link internal/backup/s3)", u.Redacted())
	}
	return nil, fmt.Errorf("backup: mirror %q: want s3://bucket/prefix", u.Redacted())
}
