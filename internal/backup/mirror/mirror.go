// Package mirror copies keyspaces into buckets continuously: a keyspace
// whose policy says `backup: s3://bucket/prefix?…` has every put and
// delete under its prefix become an object write or delete in the bucket,
// one object per key (its name the cairn key, its metadata the cluster ID
// and the key's revision or timestamp), and reads the bucket back when
// the keyspace's replicas cannot answer (ReadFallback).
//
// Where the writes wait until the bucket has them (the outbox), and which
// node copies each key, depends on the keyspace's mode:
//
//   - strong: the leader copies, in revision order, from the watch
//     history every member keeps in its state database. How far it got
//     (the cursor) goes through the Raft log, so a new leader resumes
//     where the old one stopped. Writes not yet in the bucket are the
//     revisions after the cursor, durable in the log and the history.
//     When the history no longer reaches back to the cursor (a bucket
//     down longer than the history's 10,000 revisions), the leader
//     compares the whole prefix with the bucket instead (reconcile).
//   - eventual: every replica queues each write it stores in an outbox in
//     its replica database, in the same synced batch as the write
//     (package eventual); the key's first healthy owner copies it and the
//     others drop their entries. The outbox holds keys, not writes, so it
//     is bounded by the keys; past its bound an overflow mark makes the
//     node reconcile its keys.
//
// A write is retried with backoff until the bucket takes it: nothing the
// cluster acknowledged is dropped while the bucket is down. Every
// interval (and when the outbox overflowed or the history was too short)
// a reconcile lists the bucket against the keyspace and fixes what
// differs: an object missing or with another body is written, an object
// without a key is removed. Objects written by another cluster (after a
// restore into a new cluster, which gets a new ID) are left alone by the
// reconcile and counted: `cairn backup pull` brings them back first.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/cairnkv/cairn/internal/backup"
	"github.com/cairnkv/cairn/internal/eventual"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

var errNoMirror = errors.New("mirror: the keyspace has no backup mirror")

// Service is what the mirror reads the keyspaces through: kv.Service.
type Service interface {
	Get(ctx context.Context, key string, o kv.ReadOptions) (*kv.Record, error)
	List(ctx context.Context, prefix string, o kv.ListOptions) (*kv.ListResult, error)
	Keyspaces() *keyspace.Table
}

// Strong is what the mirror needs of the strong engine.
type Strong interface {
	IsLeader() bool
	Revision() int64
	ClusterID() string
	MirrorCursor(prefix string) (int64, error)
	SaveMirrorCursor(ctx context.Context, prefix string, rev int64) error
	// WatchProgress is the strong watch of prefix from a revision, with
	// the revisions that have no event under it reported to progress.
	WatchProgress(ctx context.Context, prefix string, fromRevision int64, progress func(rev int64)) (iter.Seq2[[]kv.Event, error], error)
}

// Eventual is what the mirror needs of the eventual engine (its outbox).
type Eventual interface {
	Outbox(prefix, after string, n int) ([]eventual.OutboxEntry, error)
	OutboxDone(done []eventual.OutboxEntry) error
	OutboxLen() int64
	OutboxOverflow() uint64
	ClearOutboxOverflow(seen uint64) error
	MirrorPrimary(key string) bool
}

// Config configures a Manager.
type Config struct {
	Service  Service
	Strong   Strong
	Eventual Eventual
	// Open opens a bucket URL (nil: backup.ParseBucket).
	Open func(raw string) (backup.Bucket, error)
	// Reconcile is how often every mirror compares its keyspace with its
	// bucket (0: an hour).
	Reconcile time.Duration
	Logger    *slog.Logger
}

// DefaultReconcile is Config.Reconcile when it is 0.
const DefaultReconcile = time.Hour

// Manager runs this node's mirrors: one per keyspace whose policy has a
// backup URL, started, restarted and stopped as policies change.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	running map[string]*running // by prefix
	buckets map[string]backup.Bucket
}

type running struct {
	policy keyspace.Policy
	m      *mirror
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a manager; Run starts it.
func New(cfg Config) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Open == nil {
		cfg.Open = backup.ParseBucket
	}
	if cfg.Reconcile <= 0 {
		cfg.Reconcile = DefaultReconcile
	}
	return &Manager{cfg: cfg, log: cfg.Logger.With("subsystem", "mirror"), running: map[string]*running{}, buckets: map[string]backup.Bucket{}}
}

// Run keeps the mirrors in step with the policies until ctx is done, then
// stops them.
func (mg *Manager) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	lastSweep := time.Now()
	for {
		mg.follow(ctx)
		if time.Since(lastSweep) >= outboxSweep {
			mg.sweepOutbox()
			lastSweep = time.Now()
		}
		select {
		case <-ctx.Done():
			mg.mu.Lock()
			defer mg.mu.Unlock()
			for prefix, r := range mg.running {
				r.cancel()
				<-r.done
				delete(mg.running, prefix)
			}
			return
		case <-t.C:
		}
	}
}

// follow starts the mirrors of new policies and stops those of policies
// gone or changed.
func (mg *Manager) follow(ctx context.Context) {
	want := map[string]keyspace.Policy{}
	for _, p := range mg.cfg.Service.Keyspaces().Policies() {
		if p.Backup != "" {
			want[p.Prefix] = p
		}
	}
	mg.mu.Lock()
	defer mg.mu.Unlock()
	for prefix, r := range mg.running {
		if p, ok := want[prefix]; ok && p.Backup == r.policy.Backup && p.Mode == r.policy.Mode {
			r.policy = p
			continue
		}
		r.cancel()
		<-r.done
		delete(mg.running, prefix)
		mg.log.Info("mirror stopped", "prefix", prefix)
	}
	for prefix, p := range want {
		if _, ok := mg.running[prefix]; ok {
			continue
		}
		b, err := mg.bucketLocked(p.Backup)
		if err != nil {
			mg.log.Error("mirror cannot start", "prefix", prefix, "err", err)
			continue
		}
		m := &mirror{mg: mg, prefix: prefix, mode: p.Mode, bucket: b, log: mg.log.With("prefix", prefix)}
		m.status.Prefix, m.status.Bucket, m.status.Mode = prefix, b.String(), string(p.Mode)
		rctx, cancel := context.WithCancel(ctx)
		r := &running{policy: p, m: m, cancel: cancel, done: make(chan struct{})}
		mg.running[prefix] = r
		go func() {
			defer close(r.done)
			m.run(rctx)
		}()
		mg.log.Info("mirror started", "prefix", prefix, "bucket", b.String(), "mode", p.Mode)
	}
}

// outboxSweep is how often the outbox is cleared of the keys of
// keyspaces no longer mirrored.
const outboxSweep = time.Minute

// sweepOutbox drops the outbox entries of keys whose keyspace is no
// longer mirrored (its backup removed, or the key now in another
// keyspace): no mirror would ever take them, and they count against the
// outbox's bound.
func (mg *Manager) sweepOutbox() {
	ev := mg.cfg.Eventual
	if ev == nil || ev.OutboxLen() == 0 {
		return
	}
	if pl, ok := mg.cfg.Strong.(interface{ PoliciesLoaded() bool }); ok && !pl.PoliciesLoaded() {
		return // the table is being replayed: what is mirrored is not known yet
	}
	tab := mg.cfg.Service.Keyspaces()
	after := ""
	for {
		entries, err := ev.Outbox("", after, 1024)
		if err != nil || len(entries) == 0 {
			return
		}
		var stale []eventual.OutboxEntry
		for _, e := range entries {
			if p := tab.Lookup(e.Key); p.Backup == "" || p.Mode != keyspace.Eventual {
				stale = append(stale, e)
			}
		}
		if len(stale) > 0 {
			if err := ev.OutboxDone(stale); err != nil {
				return
			}
			mg.log.Info("mirror: dropped outbox entries of keyspaces no longer mirrored", "entries", len(stale))
		}
		after = entries[len(entries)-1].Key
	}
}

// bucketLocked opens a bucket URL once.
func (mg *Manager) bucketLocked(raw string) (backup.Bucket, error) {
	if b, ok := mg.buckets[raw]; ok {
		return b, nil
	}
	b, err := mg.cfg.Open(raw)
	if err != nil {
		return nil, err
	}
	mg.buckets[raw] = b
	return b, nil
}

// bucket is the bucket of a policy's backup URL.
func (mg *Manager) bucket(raw string) (backup.Bucket, error) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	return mg.bucketLocked(raw)
}

// CheckWrite refuses a key of a mirrored keyspace that its bucket cannot
// hold as an object (too long, not UTF-8): such a write would be
// acknowledged and never mirrored.
func (mg *Manager) CheckWrite(key string) error {
	p := mg.cfg.Service.Keyspaces().Lookup(key)
	if p.Backup == "" {
		return nil
	}
	b, err := mg.bucket(p.Backup)
	if err != nil {
		return nil // the mirror reports it; a write is not refused for it
	}
	if c, ok := b.(interface{ CheckKey(string) error }); ok {
		if err := c.CheckKey(key); err != nil {
			return fmt.Errorf("%w: %q is mirrored to %s: %w", kv.ErrInvalidKey, p.Prefix, b, err)
		}
	}
	return nil
}

// Status is what one mirror did, as this node sees it.
type Status struct {
	Prefix string `json:"prefix"`
	Bucket string `json:"bucket"`
	Mode   string `json:"mode"`
	// Active: this node copies the keyspace's writes now (the leader for
	// a strong keyspace; every node copies its own eventual keys).
	Active bool `json:"active"`
	// Cursor is the revision a strong keyspace is mirrored up to, and
	// Behind how many revisions the cluster is ahead of it.
	Cursor int64 `json:"cursor,omitempty"`
	Behind int64 `json:"behind,omitempty"`
	// Outbox is how many keys this node's eventual outbox holds (every
	// mirrored eventual keyspace together), OutboxOverflow how many it
	// could not queue since its last reconcile.
	Outbox         int64  `json:"outbox,omitempty"`
	OutboxOverflow uint64 `json:"outbox_overflow,omitempty"`
	// Puts and Deletes are the objects written and removed since start.
	Puts    int64 `json:"puts"`
	Deletes int64 `json:"deletes"`
	// LastCopy is when the bucket last took a write; LastError what it
	// last refused, and when.
	LastCopy    *time.Time `json:"last_copy,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	// Reconcile is the last comparison of the keyspace with the bucket.
	Reconcile *ReconcileStats `json:"reconcile,omitempty"`
}

// Status reports every mirror running here, by prefix.
func (mg *Manager) Status() []Status {
	mg.mu.Lock()
	ms := make([]*mirror, 0, len(mg.running))
	for _, r := range mg.running {
		ms = append(ms, r.m)
	}
	mg.mu.Unlock()
	out := make([]Status, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.snapshotStatus())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Prefix < out[j].Prefix })
	return out
}
