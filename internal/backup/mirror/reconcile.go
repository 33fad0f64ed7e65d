package mirror

import (
	"context"
	"crypto/md5" //nolint:gosec // S3's ETag of a single PUT is the body's MD5; it is compared, not trusted
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/cairnkv/cairn/internal/backup"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// ReconcileStats is what one comparison of a keyspace with its bucket
// found and did.
type ReconcileStats struct {
	At time.Time `json:"at"`
	// Keys and Objects are how many of each were compared (for an eventual
	// keyspace, those of the keys this node is the first healthy owner of).
	Keys    int `json:"keys"`
	Objects int `json:"objects"`
	// Put and Deleted are the objects written and removed to match.
	Put     int `json:"put"`
	Deleted int `json:"deleted"`
	// Foreign are objects another cluster wrote that differ from the
	// keyspace, left alone (see the package comment).
	Foreign int     `json:"foreign"`
	Seconds float64 `json:"seconds"`
}

// reconcilePage is how many keys one listing page of a reconcile reads.
const reconcilePage = 256

// reconcile makes the bucket match the keyspace: every key's object
// written if missing or different, every object without a key removed,
// objects of another cluster left alone. It returns the revision of its
// first listing page (strong keyspaces): the keyspace as of then, or
// newer, is in the bucket, so the watch resumes after it (replaying what
// changed while the later pages were read puts the newer values back).
func (m *mirror) reconcile(ctx context.Context) (int64, error) {
	start := time.Now()
	st := ReconcileStats{At: start.UTC()}
	mine := func(key string) bool {
		if !m.owns(key) {
			return false
		}
		return m.mode != keyspace.Eventual || m.mg.cfg.Eventual.MirrorPrimary(key)
	}
	objects := map[string]backup.ObjectInfo{}
	err := m.retry(ctx, "list", func(ctx context.Context) error {
		clear(objects)
		return m.bucket.ListObjects(ctx, m.prefix, func(o backup.ObjectInfo) error {
			objects[o.Key] = o
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	st.Objects = len(objects)
	cluster := m.mg.cfg.Strong.ClusterID()
	// foreign reports whether the object of key was written by another
	// cluster (an object without cairn metadata was not: someone edited
	// the bucket, and the keyspace wins).
	foreign := func(key string) (bool, error) {
		var meta backup.ObjectMeta
		err := m.retry(ctx, "stat "+key, func(ctx context.Context) error {
			var err error
			meta, err = m.bucket.StatObject(ctx, key)
			if errors.Is(err, fs.ErrNotExist) {
				meta, err = backup.ObjectMeta{}, nil
			}
			return err
		})
		if err != nil {
			return false, err
		}
		if meta.Cluster != "" && meta.Cluster != cluster {
			st.Foreign++
			return true, nil
		}
		return false, nil
	}
	var from int64
	after := ""
	for {
		var page *kv.ListResult
		err := m.retry(ctx, "list keyspace", func(ctx context.Context) error {
			var err error
			page, err = m.mg.cfg.Service.List(ctx, m.prefix, kv.ListOptions{After: after, Limit: reconcilePage})
			return err
		})
		if err != nil {
			return 0, err
		}
		if from == 0 {
			from = page.Revision
		}
		for _, rec := range page.Items {
			o, inBucket := objects[rec.Key]
			delete(objects, rec.Key)
			if !mine(rec.Key) {
				continue
			}
			st.Keys++
			if inBucket && same(o, rec) {
				continue
			}
			if inBucket {
				if f, err := foreign(rec.Key); err != nil {
					return 0, err
				} else if f {
					continue
				}
			}
			meta := backup.ObjectMeta{Revision: rec.ModRevision, Timestamp: rec.Timestamp, Expires: rec.Expires}
			if rec.Eventual() {
				meta.Revision = 0
			}
			if err := m.put(ctx, rec.Key, rec.Value, meta); err != nil {
				return 0, err
			}
			st.Put++
		}
		if !page.More || len(page.Items) == 0 {
			break
		}
		after = page.Items[len(page.Items)-1].Key
	}
	for key := range objects {
		if !mine(key) {
			continue
		}
		if f, err := foreign(key); err != nil {
			return 0, err
		} else if f {
			continue
		}
		if err := m.remove(ctx, key); err != nil {
			return 0, err
		}
		st.Deleted++
	}
	st.Seconds = time.Since(start).Seconds()
	m.mu.Lock()
	m.status.Reconcile = &st
	m.mu.Unlock()
	m.log.Info("mirror: reconciled the keyspace with the bucket", "keys", st.Keys, "objects", st.Objects,
		"put", st.Put, "deleted", st.Deleted, "foreign", st.Foreign, "took", time.Since(start).Round(time.Millisecond))
	return from, nil
}

// same reports whether the object o holds rec's value: by its MD5 when
// the bucket gives one, else by its size alone (a multipart object; the
// next write of the key replaces it anyway).
func same(o backup.ObjectInfo, rec *kv.Record) bool {
	if o.Size != int64(len(rec.Value)) {
		return false
	}
	if o.ETag == "" {
		return true
	}
	sum := md5.Sum(rec.Value) //nolint:gosec // see the import
	return o.ETag == hex.EncodeToString(sum[:])
}

// owns reports whether key belongs to this mirror's keyspace, not to a
// longer prefix's keyspace inside it.
func (m *mirror) owns(key string) bool {
	return m.mg.cfg.Service.Keyspaces().Lookup(key).Prefix == m.prefix
}

// ReadFallback reads key from its keyspace's backup mirror (kv.Config's
// ReadFallback): the value the bucket holds, which may be stale.
func (mg *Manager) ReadFallback(ctx context.Context, key string) (*kv.Record, error) {
	p := mg.cfg.Service.Keyspaces().Lookup(key)
	if p.Backup == "" {
		return nil, fmt.Errorf("%w: %q", errNoMirror, p.Prefix)
	}
	b, err := mg.bucket(p.Backup)
	if err != nil {
		return nil, err
	}
	value, meta, err := b.GetObject(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %q", kv.ErrKeyNotFound, key)
	}
	if err != nil {
		return nil, err
	}
	if meta.Expires != 0 && meta.Expires <= time.Now().UnixNano() {
		return nil, fmt.Errorf("%w: %q (expired)", kv.ErrKeyNotFound, key)
	}
	return &kv.Record{Key: key, Value: value, ModRevision: meta.Revision, Timestamp: meta.Timestamp, Expires: meta.Expires}, nil
}
