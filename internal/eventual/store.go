package eventual

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/cairnkv/cairn/internal/eventual/hlc"
	"github.com/cairnkv/cairn/internal/store"
)

// Layout of the replica database (data-dir/eventual).
const (
	prefixRecord byte = 0x01 // 0x01 key -> record
	prefixHint   byte = 0x03 // 0x03 owner 0x00 key -> record kept for owner
	prefixMeta   byte = 0x05 // 0x05 name -> value
	prefixOutbox byte = 0x07 // 0x07 key -> version token: the mirror has to copy key (outbox.go)
)

var (
	keyClock          = []byte{prefixMeta, 'h', 'l', 'c'}
	keyOutboxOverflow = append([]byte{prefixMeta}, "outbox-overflow"...) // u64: enqueues skipped at the bound
)

func recordKey(key string) []byte {
	b := make([]byte, 1+len(key))
	b[0] = prefixRecord
	copy(b[1:], key)
	return b
}

func hintKey(owner, key string) []byte {
	b := make([]byte, 0, 2+len(owner)+len(key))
	b = append(b, prefixHint)
	b = append(b, owner...)
	b = append(b, 0)
	return append(b, key...)
}

func hintPrefix(owner string) []byte {
	return append(append([]byte{prefixHint}, owner...), 0)
}

// replicas is this node's copy of the eventual keyspaces: the greatest
// version of every key it holds, and the hints it keeps for other owners.
//
// Every write goes through one committer goroutine: it drains all the
// writes waiting, merges each record with the stored version (the greater
// version wins; an equal or lesser one is dropped, which makes applying
// idempotent and commutative), commits them in one synced pebble batch and
// answers each. Concurrent writes therefore share one fsync. Reads go to
// pebble directly: a write is answered only after its batch committed, so a
// read that starts after the answer sees it.
type replicas struct {
	db  *store.DB
	log *slog.Logger

	queue chan *commit
	done  chan struct{}
	wg    sync.WaitGroup

	// now is the clock expiries are judged by (unix ns).
	now func() int64

	// onApply, when set, is called by the committer after each committed
	// batch with its records that replaced the stored version (the change
	// feed).
	onApply func(applied []put)

	// mirrored, when set, reports whether key's keyspace is mirrored to a
	// bucket: the committer then queues every replica write of it in the
	// outbox, in the write's batch.
	mirrored func(key string) bool
	// maxOutbox bounds the outbox's entries (0: defaultMaxOutbox).
	maxOutbox int64
	// outboxLen and outboxOverflow are the stored outbox's entry count and
	// overflow counter, loaded at open; only the committer changes them,
	// after each batch committed.
	outboxLen      atomic.Int64
	outboxOverflow atomic.Uint64
}

// put is one record to merge into the store, optionally as a hint for owner.
type put struct {
	key  string
	rec  *record
	hint string // non-empty: keep as a hint for this owner, not as a replica
}

// outcome is what merging a put did.
type outcome struct {
	// applied: the stored version is now the record or a greater one,
	// durably (false only for a put a peer refused).
	applied bool
	hadLive bool // the stored version before was a live value
}

// commit is one caller's writes, merged and committed together.
type commit struct {
	puts []put
	// dropHints removes hints that were delivered, if the hint stored is
	// still the delivered version.
	dropHints []put
	// drop removes replicas this node no longer keeps, if unchanged.
	drop []put
	// outbox is what the mirror changes in the outbox (a pointer: writes
	// do not pay for it in size).
	outbox *outboxChange
	out    []outcome
	err    error
	done   chan struct{}
}

// outboxChange is the mirror's part of a commit.
type outboxChange struct {
	// done removes the entries the mirror copied, if the entry stored
	// still has the token it copied.
	done []OutboxEntry
	// clearOverflow zeroes the overflow counter if it still is
	// overflowSeen.
	clearOverflow bool
	overflowSeen  uint64
}

var errClosed = errors.New("eventual: engine closed")

func openReplicas(dir string, log *slog.Logger, onFail func(error)) (*replicas, error) {
	db, err := store.Open(dir, store.Options{Logger: log, OnFail: onFail})
	if err != nil {
		return nil, err
	}
	r := &replicas{db: db, log: log, now: unixNano, queue: make(chan *commit, 1024), done: make(chan struct{})}
	if err := r.loadOutbox(); err != nil {
		_ = db.Close()
		return nil, err
	}
	r.wg.Add(1)
	go r.committer()
	return r, nil
}

func (r *replicas) close() error {
	close(r.done)
	r.wg.Wait()
	return r.db.Close()
}

// write merges puts durably and returns what each did.
func (r *replicas) write(c *commit) error {
	c.done = make(chan struct{})
	select {
	case r.queue <- c:
	case <-r.done:
		return errClosed
	}
	select {
	case <-c.done:
		return c.err
	case <-r.done:
		// The committer answers everything it took before it stops.
		<-c.done
		return c.err
	}
}

func (r *replicas) committer() {
	defer r.wg.Done()
	var group []*commit
	for {
		select {
		case c := <-r.queue:
			group = append(group[:0], c)
		case <-r.done:
			r.drain()
			return
		}
	more:
		for len(group) < 256 {
			select {
			case c := <-r.queue:
				group = append(group, c)
			default:
				break more
			}
		}
		r.apply(group)
	}
}

// drain fails what is still queued at close.
func (r *replicas) drain() {
	for {
		select {
		case c := <-r.queue:
			c.err = errClosed
			close(c.done)
		default:
			return
		}
	}
}

func (r *replicas) apply(group []*commit) {
	// A group carrying large values gets a batch of its size, allocated
	// once, and each record is encoded in place in it.
	size := 0
	for _, c := range group {
		size += putsBytes(c.puts)
	}
	var b *store.Batch
	if size >= 1<<20 {
		b = r.db.NewBatchSize(size + 4<<10)
	} else {
		b = r.db.NewBatch()
	}
	// pending holds what this batch writes, so two writes of one key in a
	// group merge with each other, not only with the stored version.
	pending := map[string]*record{}
	var applied []put
	// ob is what this batch does to the outbox, made on first use so
	// batches of unmirrored keys do not pay for it.
	var ob *outboxBatch
	outbox := func() *outboxBatch {
		if ob == nil {
			ob = r.newOutboxBatch(b)
		}
		return ob
	}
	current := func(k []byte) (*record, error) {
		if rec, ok := pending[string(k)]; ok {
			return rec, nil
		}
		// The stored version's header only: an overwrite of a large value
		// does not copy the old value out of pebble to compare versions.
		var rec *record
		err := r.db.View(k, func(v []byte) error {
			var err error
			if rec, err = decodeRecord(v); err == nil {
				rec.value = nil
			}
			return err
		})
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		return rec, err
	}
	var err error
	for _, c := range group {
		c.out = make([]outcome, len(c.puts))
		for i, p := range c.puts {
			k := recordKey(p.key)
			if p.hint != "" {
				k = hintKey(p.hint, p.key)
			}
			var cur *record
			if cur, err = current(k); err != nil {
				break
			}
			c.out[i].hadLive = cur.live(r.now())
			c.out[i].applied = true
			if cur != nil && p.rec.compare(cur.version) <= 0 {
				continue // what is stored already wins
			}
			p.rec.appendTo(b.SetBuffer(k, p.rec.encodedLen())[:0])
			pending[string(k)] = p.rec
			if p.hint == "" {
				applied = append(applied, p)
				// Queued in the record's batch: an acknowledged write is
				// queued for the mirror, whatever crash follows.
				if r.mirrored != nil && r.mirrored(p.key) {
					if err = outbox().enqueue(p.key, p.rec.version); err != nil {
						break
					}
				}
			}
		}
		if err != nil {
			break
		}
		for _, list := range [][]put{c.dropHints, c.drop} {
			for _, p := range list {
				k := recordKey(p.key)
				if p.hint != "" {
					k = hintKey(p.hint, p.key)
				}
				var cur *record
				if cur, err = current(k); err != nil {
					break
				}
				if cur != nil && cur.compare(p.rec.version) == 0 {
					b.Delete(k)
					delete(pending, string(k))
				}
			}
			if err != nil {
				break
			}
		}
		if err != nil {
			break
		}
		if oc := c.outbox; oc != nil {
			for _, d := range oc.done {
				if err = outbox().done(d); err != nil {
					break
				}
			}
			if err != nil {
				break
			}
			if oc.clearOverflow {
				outbox().clearOverflow(oc.overflowSeen)
			}
		}
	}
	if err == nil && ob != nil {
		ob.finish()
	}
	if err == nil {
		err = b.Commit(true)
	} else {
		b.Close()
	}
	if err == nil && ob != nil {
		r.outboxLen.Store(ob.n)
		r.outboxOverflow.Store(ob.overflow)
	}
	if err != nil {
		r.log.Error("eventual: write failed", "err", err)
		err = fmt.Errorf("eventual: write: %w", err)
	}
	for _, c := range group {
		c.err = err
		close(c.done)
	}
	if err == nil && r.onApply != nil && len(applied) > 0 {
		r.onApply(applied)
	}
}

// get returns the stored version of key (a tombstone or expired value
// included), or nil.
func (r *replicas) get(key string) (*record, error) {
	v, err := r.db.Get(recordKey(key))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeRecord(v)
}

// scan calls fn for every stored version with key > after under prefix,
// in key order, until fn returns false.
func (r *replicas) scan(prefix, after string, fn func(key string, rec *record) bool) error {
	lower := recordKey(prefix)
	if after >= prefix {
		lower = append(recordKey(after), 0)
	}
	upper := store.PrefixEnd(recordKey(prefix))
	var derr error
	err := r.db.Scan(lower, upper, func(k, v []byte) bool {
		rec, err := decodeRecord(v)
		if err != nil {
			derr = fmt.Errorf("%w: key %q", err, k[1:])
			return false
		}
		rec.value = append([]byte(nil), rec.value...)
		return fn(string(k[1:]), rec)
	})
	if err == nil {
		err = derr
	}
	return err
}

// hints calls fn for each hint kept for owner, oldest key first, until fn
// returns false.
func (r *replicas) hints(owner string, fn func(key string, rec *record) bool) error {
	p := hintPrefix(owner)
	return r.db.Scan(p, store.PrefixEnd(p), func(k, v []byte) bool {
		rec, err := decodeRecord(v)
		if err != nil {
			return true
		}
		rec.value = append([]byte(nil), rec.value...)
		return fn(string(k[len(p):]), rec)
	})
}

// hintOwners returns the owners this node keeps hints for.
func (r *replicas) hintOwners() ([]string, error) {
	var owners []string
	lower := []byte{prefixHint}
	for {
		k, _, err := r.db.First(lower, []byte{prefixHint + 1})
		if errors.Is(err, store.ErrNotFound) || k == nil {
			return owners, nil
		}
		if err != nil {
			return owners, err
		}
		i := 1
		for i < len(k) && k[i] != 0 {
			i++
		}
		owner := string(k[1:i])
		owners = append(owners, owner)
		lower = store.PrefixEnd(hintPrefix(owner))
		if lower == nil {
			return owners, nil
		}
	}
}

// loadClock returns the clock ceiling persisted by the last run.
func (r *replicas) loadClock() (hlc.Timestamp, error) {
	v, err := r.db.Get(keyClock)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var ts hlc.Timestamp
	if err := ts.UnmarshalText(v); err != nil {
		return 0, fmt.Errorf("eventual: stored clock: %w", err)
	}
	return ts, nil
}

// saveClock persists the clock's ceiling, synced.
func (r *replicas) saveClock(ts hlc.Timestamp) error {
	v, _ := ts.MarshalText()
	b := r.db.NewBatch()
	b.Set(keyClock, v)
	return b.Commit(true)
}
