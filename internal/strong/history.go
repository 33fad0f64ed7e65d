package strong

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync/atomic"

	"github.com/cairnkv/cairn/internal/store"
	"github.com/cairnkv/cairn/internal/watch"
	"github.com/cairnkv/cairn/kv"
)

// DefaultWatchHistory is how many revisions of events the watch history
// keeps when Config.WatchHistory is 0.
const DefaultWatchHistory = 10000

// historyPage is how many commands a replay reads from the database at once.
const historyPage = 256

// historyValueBytes is the largest value the watch history stores in an
// event. A put of a larger value is stored without it (type 'P'): 10000
// revisions of 64 MiB values would be 640 GiB. A replay fills the value in
// from the key's current record when no later command has written the key
// (the record is then the one the event made); otherwise the event comes
// with ValueOmitted, and the later write's own event follows it. Live events
// always carry their value (it is the command's, shared, not copied). The
// limit is the default max-value-bytes, so a node with the default limit
// replays every value.
const historyValueBytes = 1 << 20

// history is the watch history: the events of every write command, stored
// in the state database in the same batch as the write (0x07 be64(revision)),
// trimmed to the newest limit revisions, and published to live subscribers
// once the batch is committed. Only the apply goroutine writes it.
type history struct {
	limit int64
	// oldest is the oldest revision a watch may start from: the history
	// holds every event of revision >= oldest. It moves before the trimming
	// batch commits, so a replay that reads it after a page never misses a gap.
	oldest       atomic.Int64
	oldestStored bool
	staged       []watch.Group
	hub          watch.Hub
}

var (
	errSnapshotRestored = fmt.Errorf("%w: a snapshot replaced this node's state", kv.ErrUnavailable)
	errClosed           = fmt.Errorf("%w: the node is closing", kv.ErrUnavailable)
)

// loadHistory reads the oldest revision kept; a database without one (new,
// written before the history existed, or restored from such a snapshot)
// has history from the revision after its last one.
func (m *Machine) loadHistory(rev int64) error {
	h := &m.hist
	h.staged = nil
	h.hub.Drop(errSnapshotRestored)
	v, err := m.db.Get(historyOldestKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.oldest.Store(rev + 1)
		h.oldestStored = false
		return nil
	case err != nil:
		return err
	case len(v) != 8:
		return errCorruptRecord
	}
	h.oldest.Store(int64(binary.BigEndian.Uint64(v)))
	h.oldestStored = true
	return nil
}

// recordHistory writes the batch's events to b and trims the history to the
// newest limit revisions at rev. It trims in steps of a sixteenth of the
// limit, so each step is one range deletion rather than one per batch.
func (m *Machine) recordHistory(b *store.Batch, groups []watch.Group, rev int64) {
	h := &m.hist
	// Encoded in place in the batch, under one key buffer.
	key := historyKey(0)
	for _, g := range groups {
		binary.BigEndian.PutUint64(key[1:], uint64(g.Revision))
		appendEvents(b.SetBuffer(key, eventsLen(g.Events))[:0], g.Events)
	}
	h.staged = groups
	oldest := h.oldest.Load()
	if h.limit > 0 {
		want := rev - h.limit + 1
		if want-oldest >= max(1, h.limit/16) {
			b.DeleteRange(historyKey(0), historyKey(want))
			oldest = want
			h.oldest.Store(oldest)
			h.oldestStored = false
		}
	}
	if !h.oldestStored {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(oldest))
		b.Set(historyOldestKey, v[:])
		h.oldestStored = true
	}
}

// publishHistory hands the committed batch's events to the subscribers.
func (m *Machine) publishHistory() {
	for _, g := range m.hist.staged {
		m.hist.hub.Publish(g)
	}
	m.hist.staged = nil
}

// OldestRevision is the oldest revision a watch may start from.
func (m *Machine) OldestRevision() int64 { return m.hist.oldest.Load() }

// readHistory returns up to n commands' events of revision >= from, in
// revision order.
func (m *Machine) readHistory(from int64, n int) ([]watch.Group, error) {
	var (
		out  []watch.Group
		derr error
	)
	err := m.db.Scan(historyKey(from), historyKey(-1), func(k, v []byte) bool {
		evs, err := decodeEvents(v, int64(binary.BigEndian.Uint64(k[1:])))
		if err != nil {
			derr = err
			return false
		}
		out = append(out, watch.Group{Revision: evs[0].Revision, Events: evs})
		return len(out) < n
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, err
	}
	for _, g := range out {
		for i := range g.Events {
			if ev := &g.Events[i]; ev.ValueOmitted {
				if err := m.fillOmitted(ev); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

// fillOmitted gives a replayed put whose value the history did not keep the
// key's current value, when the current record is the one the event's
// command wrote: its mod revision is at most the event's (a later write
// would have a greater one; the command's own ops have revisions up to the
// event's).
func (m *Machine) fillOmitted(ev *kv.Event) error {
	r, ok := m.recent.get(ev.Key)
	if !ok {
		raw, err := m.db.Get(dataKey(ev.Key))
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		default:
			if r, err = decodeRecord(ev.Key, raw); err != nil {
				return err
			}
		}
	}
	if r != nil && r.ModRevision <= ev.Revision {
		ev.Value, ev.ValueOmitted = r.Value, false
	}
	return nil
}

// Watch implements kv.Watcher: it replays the history from fromRevision (0:
// from now), then delivers events live as batches commit. A subscriber that
// falls behind, or a snapshot that replaces this node's state, ends the
// sequence with an error that names the revision to resume from.
func (e *Engine) Watch(ctx context.Context, prefix string, fromRevision int64) (iter.Seq2[[]kv.Event, error], error) {
	return e.machine.watch(ctx, prefix, fromRevision, e.cfg.WatchBuffer, nil)
}

// WatchProgress is Watch that also reports, through progress, every
// revision with no event under prefix as it passes (called from the
// sequence's own goroutine, in revision order, between the events): a
// consumer that has handled everything up to a progress revision is
// caught up to it (the backup mirror's cursor moves with it).
func (e *Engine) WatchProgress(ctx context.Context, prefix string, fromRevision int64, progress func(rev int64)) (iter.Seq2[[]kv.Event, error], error) {
	return e.machine.watch(ctx, prefix, fromRevision, e.cfg.WatchBuffer, progress)
}

// watch is Watch on the machine, with a subscription of buffer commands.
// With progress, the subscription takes every command's group, so that
// revisions without events under prefix are seen too.
func (m *Machine) watch(ctx context.Context, prefix string, fromRevision int64, buffer int, progress func(int64)) (iter.Seq2[[]kv.Event, error], error) {
	subPrefix := prefix
	if progress != nil {
		subPrefix = ""
	}
	sub := m.hist.hub.Subscribe(subPrefix, buffer)
	next := fromRevision
	if next == 0 {
		next = m.Revision() + 1
	} else if oldest := m.OldestRevision(); next < oldest {
		sub.Close()
		return nil, &kv.CompactedError{From: next, Oldest: oldest}
	}
	replay := fromRevision != 0
	return func(yield func([]kv.Event, error) bool) {
		defer sub.Close()
		deliver := func(g watch.Group) bool {
			var evs []kv.Event
			for _, ev := range g.Events {
				if strings.HasPrefix(ev.Key, prefix) {
					evs = append(evs, ev)
				}
			}
			next = g.Revision + 1
			if len(evs) == 0 {
				if progress != nil {
					progress(g.Revision)
				}
				return true
			}
			return yield(evs, nil)
		}
		for replay {
			groups, err := m.readHistory(next, historyPage)
			if err == nil && m.OldestRevision() > next {
				err = &kv.CompactedError{From: next, Oldest: m.OldestRevision()}
			}
			if err != nil {
				yield(nil, err)
				return
			}
			for _, g := range groups {
				if !deliver(g) {
					return
				}
			}
			replay = len(groups) == historyPage
		}
		for {
			select {
			case <-ctx.Done():
				return
			case g := <-sub.C():
				if g.Revision < next {
					continue // replayed already
				}
				if brokenWatchDrops && g.Revision%25 == 0 {
					continue
				}
				if !deliver(g) {
					return
				}
			case <-sub.Done():
				// What was delivered before the drop still counts.
				for len(sub.C()) > 0 {
					if g := <-sub.C(); g.Revision >= next && !deliver(g) {
						return
					}
				}
				yield(nil, fmt.Errorf("%w; resume from revision %d", sub.Err(), next))
				return
			}
		}
	}, nil
}

// Events layout (the value of 0x07 be64(revision)): count uvarint, then per
// event: type byte ('p' put, 'P' put of a value over historyValueBytes,
// stored empty, 'd' delete, 'x' delete by expiry) | len(key) uvarint | key |
// len(value) uvarint | value.
func encodeEvents(evs []kv.Event) []byte { return appendEvents(make([]byte, 0, eventsLen(evs)), evs) }

// storedValue is what the history keeps of ev: its type byte and value.
func storedValue(ev *kv.Event) (byte, []byte) {
	switch {
	case ev.Type == kv.EventDelete && ev.Expired:
		return 'x', ev.Value
	case ev.Type == kv.EventDelete:
		return 'd', ev.Value
	case len(ev.Value) > historyValueBytes || ev.ValueOmitted:
		return 'P', nil
	}
	return 'p', ev.Value
}

// eventsLen is the exact length of the encoding of evs.
func eventsLen(evs []kv.Event) int {
	n := uvarintLen(uint64(len(evs)))
	for i := range evs {
		_, v := storedValue(&evs[i])
		n += 1 + uvarintLen(uint64(len(evs[i].Key))) + len(evs[i].Key) + uvarintLen(uint64(len(v))) + len(v)
	}
	return n
}

// appendEvents appends the encoding of evs to b.
func appendEvents(b []byte, evs []kv.Event) []byte {
	b = binary.AppendUvarint(b, uint64(len(evs)))
	for i := range evs {
		t, v := storedValue(&evs[i])
		b = append(b, t)
		b = binary.AppendUvarint(b, uint64(len(evs[i].Key)))
		b = append(b, evs[i].Key...)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

func decodeEvents(b []byte, rev int64) ([]kv.Event, error) {
	n, p := binary.Uvarint(b)
	if p <= 0 || n == 0 || n > uint64(len(b)) {
		return nil, errCorruptRecord
	}
	field := func() ([]byte, bool) {
		l, k := binary.Uvarint(b[p:])
		if k <= 0 || uint64(len(b)-p-k) < l {
			return nil, false
		}
		p += k
		f := b[p : p+int(l)]
		p += int(l)
		return f, true
	}
	evs := make([]kv.Event, 0, n)
	for range n {
		if p >= len(b) {
			return nil, errCorruptRecord
		}
		ev := kv.Event{Type: kv.EventPut, Revision: rev}
		switch b[p] {
		case 'p':
		case 'P':
			ev.ValueOmitted = true
		case 'd':
			ev.Type = kv.EventDelete
		case 'x':
			ev.Type, ev.Expired = kv.EventDelete, true
		default:
			return nil, errCorruptRecord
		}
		p++
		key, ok := field()
		if !ok {
			return nil, errCorruptRecord
		}
		val, ok := field()
		if !ok {
			return nil, errCorruptRecord
		}
		ev.Key = string(key)
		if ev.Type == kv.EventPut && !ev.ValueOmitted {
			ev.Value = append([]byte{}, val...)
		}
		evs = append(evs, ev)
	}
	return evs, nil
}
