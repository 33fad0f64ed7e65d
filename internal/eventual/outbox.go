package eventual

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cairnkv/cairn/internal/eventual/hlc"
	"github.com/cairnkv/cairn/internal/store"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// The mirror outbox: the keys of mirrored keyspaces (a policy with a
// Backup bucket) whose newest version this node has not yet copied to the
// bucket. The committer writes an entry in the same batch as every replica
// write of such a key, so a write this replica acknowledged is queued even
// if the process is killed right after; the entry's value is the version
// (its token), and a later write of the key replaces it, so the outbox
// holds at most one entry per key whatever the write rate. The mirror reads
// entries, copies the keys' current values, and removes each entry only if
// its token did not change meanwhile (a write in between keeps it queued).
// Hints are not queued: the owner queues the write when the hint is handed
// to it, as it does for read repair and anti-entropy, which all reach a
// replica through the committer.
//
// The outbox is bounded (Config.MaxOutbox): at the bound a key that has no
// entry is not queued; a persisted overflow counter records that instead,
// and the mirror answers it with a full reconcile of the keyspace, then
// clears it.

// defaultMaxOutbox is Config.MaxOutbox when it is 0.
const defaultMaxOutbox = 1_000_000

// OutboxEntry is one key the mirror has to copy to its bucket.
type OutboxEntry struct {
	Key string
	// Token is the version of Key that was queued; it is opaque (binary)
	// and only compared for equality, by OutboxDone.
	Token string
}

// Stamped is when the queued version was written (its stamp's physical
// time); the zero time for a token that does not carry one.
func (o OutboxEntry) Stamped() time.Time {
	if len(o.Token) < 8 {
		return time.Time{}
	}
	return o.Stamp().Time()
}

// Stamp is the queued version's hybrid logical clock stamp (0 for a token
// that does not carry one).
func (o OutboxEntry) Stamp() hlc.Timestamp {
	if len(o.Token) < 8 {
		return 0
	}
	return hlc.Timestamp(binary.BigEndian.Uint64([]byte(o.Token[:8])))
}

func outboxKey(key string) []byte {
	b := make([]byte, 1+len(key))
	b[0] = prefixOutbox
	copy(b[1:], key)
	return b
}

// token is v encoded as the record encodes it: the stamp (8 bytes, big
// endian), then the origin.
func (v version) token() []byte {
	b := make([]byte, 0, 8+len(v.origin))
	b = binary.BigEndian.AppendUint64(b, uint64(v.stamp))
	return append(b, v.origin...)
}

// mirrored is the committer's hook: key belongs to an eventual keyspace
// whose policy mirrors it to a bucket.
func (e *Engine) mirrored(key string) bool {
	if pl, ok := e.cfg.Cluster.(interface{ PoliciesLoaded() bool }); ok && !pl.PoliciesLoaded() {
		// A node replaying its log after a restart does not know the
		// policies yet, and the writes it takes meanwhile (hints handed
		// back to it first of all) must not miss the outbox: every one is
		// queued, and the mirror drops those of keyspaces not mirrored.
		return true
	}
	p := e.cfg.Cluster.Keyspaces().Lookup(key)
	return p.Mode == keyspace.Eventual && p.Backup != ""
}

// Outbox returns at most n entries whose key is under prefix and greater
// than after, in key order; n <= 0 returns none. Any prefix may be asked,
// including one no longer mirrored, so the mirror can clear what a removed
// policy left behind.
func (e *Engine) Outbox(prefix, after string, n int) ([]OutboxEntry, error) {
	if e.closed.Load() {
		return nil, errClosed
	}
	return e.reps.outbox(prefix, after, n)
}

// OutboxDone removes each entry whose stored token is still the entry's
// Token; an entry rewritten since it was read stays queued. The mirror
// must read the entries before it reads the values it copies, so a write
// it did not copy always changes the token. It goes through the committer,
// so it is ordered with the writes.
func (e *Engine) OutboxDone(done []OutboxEntry) error {
	if len(done) == 0 {
		return nil
	}
	return e.reps.write(&commit{outbox: &outboxChange{done: done}})
}

// OutboxLen returns the number of entries in the outbox.
func (e *Engine) OutboxLen() int64 { return e.reps.outboxLen.Load() }

// OutboxOverflow returns how many writes of keys that had no entry were
// not queued because the outbox was full, since the counter was last
// cleared (it is persisted); 0 means none were skipped.
func (e *Engine) OutboxOverflow() uint64 { return e.reps.outboxOverflow.Load() }

// ClearOutboxOverflow zeroes the overflow counter if it still is seen (the
// value read before the mirror's full reconcile began); a skip after that
// read keeps it set, so the mirror reconciles again. It goes through the
// committer.
func (e *Engine) ClearOutboxOverflow(seen uint64) error {
	return e.reps.write(&commit{outbox: &outboxChange{clearOverflow: true, overflowSeen: seen}})
}

// MirrorPrimary reports whether this node is the one that copies key to
// its bucket: the first member of key's preference list (its policy's N
// owners) that the failure detector finds healthy, this node always
// counting as healthy; when no owner is healthy, the first owner.
func (e *Engine) MirrorPrimary(key string) bool {
	v := e.view.Load()
	_, n, _, _ := e.policy(v, key)
	owners := v.owners(key, n)
	for _, o := range owners {
		switch e.det.health(o) {
		case kv.HealthSelf, kv.HealthHealthy:
			return o == e.cfg.Name
		}
	}
	return len(owners) > 0 && owners[0] == e.cfg.Name
}

// loadOutbox counts the outbox's entries and loads the overflow counter;
// openReplicas calls it before the committer starts.
func (r *replicas) loadOutbox() error {
	var n int64
	p := []byte{prefixOutbox}
	if err := r.db.Scan(p, store.PrefixEnd(p), func(_, _ []byte) bool { n++; return true }); err != nil {
		return fmt.Errorf("eventual: count the outbox: %w", err)
	}
	r.outboxLen.Store(n)
	v, err := r.db.Get(keyOutboxOverflow)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("eventual: outbox overflow: %w", err)
	case len(v) != 8:
		return fmt.Errorf("eventual: outbox overflow: %d bytes stored", len(v))
	}
	r.outboxOverflow.Store(binary.BigEndian.Uint64(v))
	return nil
}

// outbox returns at most n entries under prefix with key > after.
func (r *replicas) outbox(prefix, after string, n int) ([]OutboxEntry, error) {
	if n <= 0 {
		return nil, nil
	}
	lower := outboxKey(prefix)
	if after >= prefix {
		lower = append(outboxKey(after), 0)
	}
	var out []OutboxEntry
	err := r.db.Scan(lower, store.PrefixEnd(outboxKey(prefix)), func(k, v []byte) bool {
		out = append(out, OutboxEntry{Key: string(k[1:]), Token: string(v)})
		return len(out) < n
	})
	return out, err
}

// outboxBatch is what one committer batch does to the outbox: the entries
// it writes or removes (nil: removed), so several writes and removals of a
// key in one batch see each other, and the count and overflow counter it
// leaves, stored in the replicas once the batch committed.
type outboxBatch struct {
	r       *replicas
	b       *store.Batch
	pending map[string][]byte
	n       int64
	// overflow is the counter after this batch; dirty: it changed.
	overflow uint64
	dirty    bool
}

func (r *replicas) newOutboxBatch(b *store.Batch) *outboxBatch {
	return &outboxBatch{r: r, b: b, pending: map[string][]byte{},
		n: r.outboxLen.Load(), overflow: r.outboxOverflow.Load()}
}

// current returns the token stored (or written in this batch) for an
// outbox key, or nil.
func (o *outboxBatch) current(k []byte) ([]byte, error) {
	if t, ok := o.pending[string(k)]; ok {
		return t, nil
	}
	var t []byte
	err := o.r.db.View(k, func(v []byte) error {
		t = append([]byte(nil), v...)
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return t, err
}

// enqueue queues key at version v, replacing its entry if it has one; a
// new entry at the bound is counted as an overflow instead.
func (o *outboxBatch) enqueue(key string, v version) error {
	k := outboxKey(key)
	cur, err := o.current(k)
	if err != nil {
		return err
	}
	if cur == nil {
		limit := o.r.maxOutbox
		if limit <= 0 {
			limit = defaultMaxOutbox
		}
		if o.n >= limit {
			o.overflow++
			o.dirty = true
			return nil
		}
		o.n++
	}
	t := v.token()
	o.b.Set(k, t)
	o.pending[string(k)] = t
	return nil
}

// done removes d's entry if its token is unchanged.
func (o *outboxBatch) done(d OutboxEntry) error {
	k := outboxKey(d.Key)
	cur, err := o.current(k)
	if err != nil || cur == nil || !bytes.Equal(cur, []byte(d.Token)) {
		return err
	}
	o.b.Delete(k)
	o.pending[string(k)] = nil
	o.n--
	return nil
}

// clearOverflow zeroes the overflow counter if it is seen.
func (o *outboxBatch) clearOverflow(seen uint64) {
	if o.overflow == seen && seen != 0 {
		o.overflow = 0
		o.dirty = true
	}
}

// finish writes the overflow counter into the batch if it changed.
func (o *outboxBatch) finish() {
	if !o.dirty {
		return
	}
	if o.overflow == 0 {
		o.b.Delete(keyOutboxOverflow)
		return
	}
	o.b.Set(keyOutboxOverflow, binary.BigEndian.AppendUint64(nil, o.overflow))
}
