package mirror

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/internal/backup"
	"github.com/cairnkv/cairn/internal/eventual"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// mirror copies one keyspace into one bucket.
type mirror struct {
	mg     *Manager
	prefix string
	mode   keyspace.Mode
	bucket backup.Bucket
	log    *slog.Logger

	mu     sync.Mutex
	status Status
}

const (
	// cursorEvery is how often a strong mirror's leader saves its cursor
	// when it moved.
	cursorEvery = time.Second
	// outboxPage is how many outbox entries one pass takes.
	outboxPage = 256
	// idlePoll is how often an empty eventual outbox is looked at again.
	idlePoll = 200 * time.Millisecond
	// handoverGrace is how long a replica that is not a key's first
	// healthy owner waits before it checks that the bucket has its version
	// of the key (the owner copies it meanwhile).
	handoverGrace = 5 * time.Second
	// Retries of a write the bucket refused back off from minBackoff to
	// maxBackoff.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
)

func (m *mirror) run(ctx context.Context) {
	ctx = auth.WithIdentity(ctx, auth.System)
	if m.mode == keyspace.Eventual {
		m.runEventual(ctx)
		return
	}
	m.runStrong(ctx)
}

func (m *mirror) snapshotStatus() Status {
	m.mu.Lock()
	st := m.status
	m.mu.Unlock()
	switch m.mode {
	case keyspace.Strong:
		st.Active = m.mg.cfg.Strong.IsLeader()
		if c, err := m.mg.cfg.Strong.MirrorCursor(m.prefix); err == nil {
			st.Cursor = c
			if b := m.mg.cfg.Strong.Revision() - c; b > 0 && c > 0 {
				st.Behind = b
			}
		}
	case keyspace.Eventual:
		st.Active = true
		st.Outbox = m.mg.cfg.Eventual.OutboxLen()
		st.OutboxOverflow = m.mg.cfg.Eventual.OutboxOverflow()
	}
	return st
}

func (m *mirror) noteCopy(deleted bool) {
	now := time.Now().UTC()
	m.mu.Lock()
	defer m.mu.Unlock()
	if deleted {
		m.status.Deletes++
	} else {
		m.status.Puts++
	}
	m.status.LastCopy = &now
}

func (m *mirror) noteError(err error) {
	now := time.Now().UTC()
	m.mu.Lock()
	m.status.LastError, m.status.LastErrorAt = err.Error(), &now
	m.mu.Unlock()
}

// retry runs op until it succeeds or ctx ends, backing off between tries:
// a bucket that is down delays the mirror, it never drops a write.
func (m *mirror) retry(ctx context.Context, what string, op func(context.Context) error) error {
	wait := minBackoff
	for n := 1; ; n++ {
		octx, cancel := context.WithTimeout(ctx, opTimeout)
		err := op(octx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		m.noteError(err)
		if brokenDropsFailedWrites && what != "list" && what != "list keyspace" {
			return nil
		}
		if n == 1 || n%10 == 0 {
			m.log.Warn("mirror: the bucket refused a write; retrying", "what", what, "tries", n, "err", err)
		}
		if !sleep(ctx, wait/2+rand.N(wait/2+1)) {
			return ctx.Err()
		}
		wait = min(2*wait, maxBackoff)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// put copies a key's value into the bucket.
func (m *mirror) put(ctx context.Context, key string, value []byte, meta backup.ObjectMeta) error {
	meta.Cluster = m.mg.cfg.Strong.ClusterID()
	err := m.retry(ctx, "put "+key, func(ctx context.Context) error { return m.bucket.PutObject(ctx, key, value, meta) })
	if err == nil {
		m.noteCopy(false)
	}
	return err
}

// remove deletes a key's object.
func (m *mirror) remove(ctx context.Context, key string) error {
	err := m.retry(ctx, "delete "+key, func(ctx context.Context) error { return m.bucket.DeleteObject(ctx, key) })
	if err == nil {
		m.noteCopy(true)
	}
	return err
}

// runStrong copies the keyspace while this node leads.
func (m *mirror) runStrong(ctx context.Context) {
	st := m.mg.cfg.Strong
	reconcile := false
	for ctx.Err() == nil {
		if !st.IsLeader() {
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		go func() {
			// Leadership lost: the next leader carries on from the cursor.
			for sleep(lctx, 200*time.Millisecond) {
				if !st.IsLeader() {
					cancel()
					return
				}
			}
		}()
		err := m.lead(lctx, reconcile)
		cancel()
		reconcile = errors.Is(err, errReconcileDue)
		if err != nil && !reconcile && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			m.noteError(err)
			m.log.Warn("mirror: the copy stopped; starting again", "err", err)
			sleep(ctx, time.Second)
		}
	}
}

var errReconcileDue = errors.New("mirror: reconcile due")

// lead copies the keyspace's writes after the cursor, in revision order,
// until ctx ends (this node no longer leads), the watch fails, or the
// Reconcile interval has passed (errReconcileDue). It reconciles first
// when asked to, when nothing was mirrored yet, or when the history no
// longer reaches back to the cursor.
func (m *mirror) lead(ctx context.Context, reconcileFirst bool) error {
	st := m.mg.cfg.Strong
	start, err := st.MirrorCursor(m.prefix)
	if err != nil {
		return err
	}
	// cursor is the last revision whose events are all in the bucket;
	// only this goroutine moves it, the saver below reads it.
	var cursor atomic.Int64
	cursor.Store(start)
	var saveMu sync.Mutex
	saved := start
	save := func() {
		saveMu.Lock()
		defer saveMu.Unlock()
		c := cursor.Load()
		if c <= saved {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := st.SaveMirrorCursor(sctx, m.prefix, c); err == nil {
			saved = c
		} else if ctx.Err() == nil {
			m.log.Debug("mirror: saving the cursor", "err", err)
		}
	}
	moveTo := func(rev int64) {
		if rev > cursor.Load() {
			cursor.Store(rev)
		}
	}
	reconcile := func() error {
		from, err := m.reconcile(ctx)
		if err != nil {
			return err
		}
		moveTo(from)
		save()
		return nil
	}
	if start == 0 || reconcileFirst {
		if err := reconcile(); err != nil {
			return err
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, m.mg.cfg.Reconcile)
	defer wcancel()
	// Revisions without an event under the prefix move the cursor too
	// (progress runs in this goroutine, between the loop's turns).
	seq, err := st.WatchProgress(wctx, m.prefix, cursor.Load()+1, moveTo)
	if errors.Is(err, kv.ErrCompacted) {
		// The bucket was behind by more than the history keeps.
		m.log.Info("mirror: the watch history no longer reaches the cursor; reconciling", "cursor", cursor.Load(), "err", err)
		if err := reconcile(); err != nil {
			return err
		}
		seq, err = st.WatchProgress(wctx, m.prefix, cursor.Load()+1, moveTo)
	}
	if err != nil {
		return err
	}
	saverDone := make(chan struct{})
	go func() {
		defer close(saverDone)
		for sleep(wctx, cursorEvery) {
			save()
		}
	}()
	defer func() {
		wcancel()
		<-saverDone
		if ctx.Err() == nil {
			save()
		}
	}()
	for evs, err := range seq {
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if ev.Revision <= cursor.Load() {
				continue // copied already (a reconcile went past it)
			}
			if err := m.copyStrong(wctx, ev); err != nil {
				break // the watch's ctx ended
			}
		}
		if wctx.Err() != nil {
			break
		}
		moveTo(evs[len(evs)-1].Revision)
	}
	if ctx.Err() == nil && errors.Is(wctx.Err(), context.DeadlineExceeded) {
		return errReconcileDue
	}
	return ctx.Err()
}

// copyStrong copies one event of a strong key.
func (m *mirror) copyStrong(ctx context.Context, ev kv.Event) error {
	if ev.Type == kv.EventDelete {
		return m.remove(ctx, ev.Key)
	}
	value, meta := ev.Value, backup.ObjectMeta{Revision: ev.Revision}
	if ev.ValueOmitted {
		// A large value the history does not keep: the key's current
		// value, which is as new or newer (a later change comes as an
		// event of its own).
		rec, err := m.mg.cfg.Service.Get(ctx, ev.Key, kv.ReadOptions{})
		switch {
		case errors.Is(err, kv.ErrKeyNotFound):
			return m.remove(ctx, ev.Key)
		case err != nil:
			return err
		}
		value, meta.Revision, meta.Expires = rec.Value, rec.ModRevision, rec.Expires
	}
	return m.put(ctx, ev.Key, value, meta)
}

// runEventual copies the keys this node is the first healthy owner of
// from its outbox, and reconciles them every interval and after an
// overflow.
func (m *mirror) runEventual(ctx context.Context) {
	ev := m.mg.cfg.Eventual
	// A node's first reconcile is some time after start, spread out, so
	// a restarted cluster does not list the bucket from every node at once.
	nextReconcile := time.Now().Add(m.mg.cfg.Reconcile/10 + rand.N(m.mg.cfg.Reconcile/10+1))
	after := ""
	for ctx.Err() == nil {
		if seen := ev.OutboxOverflow(); seen > 0 || time.Now().After(nextReconcile) {
			if _, err := m.reconcile(ctx); err != nil {
				if ctx.Err() == nil {
					m.noteError(err)
					m.log.Warn("mirror: reconcile failed", "err", err)
					sleep(ctx, 5*time.Second)
				}
				continue
			}
			if seen > 0 {
				if err := ev.ClearOutboxOverflow(seen); err != nil {
					m.log.Warn("mirror: clearing the outbox overflow", "err", err)
				}
			}
			nextReconcile = time.Now().Add(m.mg.cfg.Reconcile)
		}
		entries, err := ev.Outbox(m.prefix, after, outboxPage)
		if err != nil {
			m.noteError(err)
			sleep(ctx, time.Second)
			continue
		}
		if len(entries) == 0 {
			after = ""
			sleep(ctx, idlePoll)
			continue
		}
		done := make([]eventual.OutboxEntry, 0, len(entries))
		for _, e := range entries {
			if !m.owns(e.Key) {
				continue // a keyspace inside this one: its own mirror's
			}
			// The first healthy owner copies at once. Another replica
			// waits, then makes sure the bucket has the version it holds,
			// and copies it if not: the owners' views of who is first
			// differ around failures and partitions (each side of a split
			// copies what it has), and a replica that learns the version
			// the others keep after the owner copied another one must not
			// leave that one in the bucket.
			primary := ev.MirrorPrimary(e.Key)
			if brokenDropsFailedWrites && !primary {
				done = append(done, e) // the broken build: no second look
				continue
			}
			if !primary && time.Since(e.Stamped()) < handoverGrace {
				continue
			}
			if err := m.copyEventual(ctx, e); err != nil {
				break // ctx ended; the entry stays
			}
			done = append(done, e)
		}
		if len(done) > 0 {
			if err := ev.OutboxDone(done); err != nil {
				m.log.Warn("mirror: outbox", "err", err)
			}
		}
		after = entries[len(entries)-1].Key
		if len(entries) < outboxPage {
			after = ""
			if len(done) < len(entries) {
				// What is left waits for its grace: no busy loop over it.
				sleep(ctx, idlePoll)
			}
		}
	}
}

// copyEventual copies this node's current version of an eventual key
// unless the bucket holds that very version (the object's
// cairn-timestamp), or removes the key's object if the key is deleted
// here. It goes by what this node holds, not by which version is newer:
// the replicas converge on one version, each queues it when it gets it,
// and the last copy of every replica is of that version, so the bucket
// ends with it whatever order the copies took (a version newer by its
// stamp is not always the one the replicas keep: one from a clock too far
// ahead is refused by the others).
func (m *mirror) copyEventual(ctx context.Context, e eventual.OutboxEntry) error {
	rec, err := m.mg.cfg.Service.Get(ctx, e.Key, kv.ReadOptions{Local: true})
	deleted := errors.Is(err, kv.ErrKeyNotFound)
	if err != nil && !deleted {
		// This node's own copy is always readable; an error is the node
		// closing.
		return err
	}
	var theirs string
	absent := false
	err = m.retry(ctx, "stat "+e.Key, func(ctx context.Context) error {
		meta, err := m.bucket.StatObject(ctx, e.Key)
		if errors.Is(err, fs.ErrNotExist) {
			absent = true
			return nil
		}
		theirs = meta.Timestamp
		return err
	})
	switch {
	case err != nil:
		return err
	case deleted && absent, !deleted && !absent && theirs == rec.Timestamp:
		return nil // the bucket has it
	case deleted:
		return m.remove(ctx, e.Key)
	}
	return m.put(ctx, e.Key, rec.Value, backup.ObjectMeta{Timestamp: rec.Timestamp, Expires: rec.Expires})
}
