package strong

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/internal/store"
	"github.com/cairnkv/cairn/internal/watch"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// Machine is the strong engine's deterministic state machine: it applies
// committed commands to the state database. Every replica runs the same
// commands in the same order with the same leader timestamps, so every
// replica ends in the same state (TTL expiry included).
type Machine struct {
	db  *store.DB
	rev atomic.Int64 // last applied revision (for status; reads take it from the db)
	// recent caches the committed records the machine read or wrote lately,
	// for its own lookups (a memtable seek is a chain of cache misses: it
	// was the largest cost of applying a write) and for the service's reads.
	// Only the apply goroutine changes it; writes of a batch are published
	// after the batch is committed and before the applied index moves (see
	// Committed), so a read that waited for an index sees them.
	recent recordCache
	// staged holds the current batch's writes until Committed.
	staged map[string]*kv.Record
	// authState is the replicated users and rules (see auth.go).
	authState atomic.Pointer[kv.AuthState]
	// keyspaces is the replicated keyspace policies (see keyspaces.go).
	keyspaces *keyspace.Table
	// hist is the watch history and its live subscribers (see history.go).
	hist history
	// clusterID is the cluster's ID (clusterid.go).
	clusterID atomic.Pointer[string]
	// noFastPath applies every transaction through the general path (for
	// the tests that compare the two; see fastpath.go).
	noFastPath bool
}

var _ raftnode.StateMachine = (*Machine)(nil)

// NewMachine loads the machine's state from db.
func NewMachine(db *store.DB) (*Machine, error) {
	m := &Machine{db: db, recent: recordCache{budget: recordCacheBudget}, keyspaces: keyspace.NewTable(),
		hist: history{limit: DefaultWatchHistory}}
	if err := m.Restored(); err != nil {
		return nil, err
	}
	return m, nil
}

// Restored reloads cached state after a snapshot replaced the database.
func (m *Machine) Restored() error {
	m.staged = nil
	_, _, err := m.db.First([]byte{prefixData}, []byte{prefixData + 1})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		m.recent.reset(false)
		return err
	}
	// From an empty database every record passes through the cache.
	m.recent.reset(errors.Is(err, store.ErrNotFound))
	rev, err := readRevision(m.db)
	if err != nil {
		return err
	}
	m.rev.Store(rev)
	if err := m.loadHistory(rev); err != nil {
		return err
	}
	if err := m.loadAuth(); err != nil {
		return err
	}
	if err := m.loadClusterID(); err != nil {
		return err
	}
	return m.loadKeyspaces()
}

type getter interface {
	Get(key []byte) ([]byte, error)
}

func readRevision(g getter) (int64, error) { return readInt64(g, revKey) }

// readInt64 reads a be64 number stored at key (0 when there is none).
func readInt64(g getter, key []byte) (int64, error) {
	v, err := g.Get(key)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, errCorruptRecord
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// Revision is the last applied cluster revision.
func (m *Machine) Revision() int64 { return m.rev.Load() }

// applyBatch is the state of one Apply call: writes are staged in pending so
// later commands of the batch read them, then written to the batch at the end.
type applyBatch struct {
	m       *Machine
	b       *store.Batch
	rev     int64
	pending map[string]*kv.Record // nil value: deleted
	groups  []watch.Group         // the events of each command, for the history
	// clusterID is the cluster ID this batch set ("" if none).
	clusterID string
	// mirrorCursors are the mirror cursors this batch set.
	mirrorCursors map[string]int64
	// events is where the single-event groups of the batch take their
	// event from: one allocation per batch instead of one per command.
	events []kv.Event
}

// Apply implements raftnode.StateMachine.
func (m *Machine) Apply(b *store.Batch, entries []raftnode.Entry) [][]byte {
	// The previous batch is committed by now (the caller commits each batch
	// before applying the next), whether or not Committed was called.
	m.Committed()
	ab := &applyBatch{m: m, b: b, rev: m.rev.Load(), pending: make(map[string]*kv.Record, len(entries)),
		groups: make([]watch.Group, 0, len(entries))}
	out := make([][]byte, len(entries))
	for i, e := range entries {
		out[i] = ab.apply(e)
	}
	// The batch copies keys and values: one key buffer serves every
	// record, and each record is encoded in place in the batch.
	var key []byte
	for k, r := range ab.pending {
		key = append(append(key[:0], prefixData), k...)
		if r == nil {
			b.Delete(key)
		} else {
			appendRecord(b.SetBuffer(key, recordLen(r))[:0], r)
		}
	}
	m.staged = ab.pending
	m.recordHistory(b, ab.groups, ab.rev)
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(ab.rev))
	b.Set(revKey, v[:])
	m.rev.Store(ab.rev)
	if ab.clusterID != "" {
		m.clusterID.Store(&ab.clusterID)
	}
	return out
}

// Committed implements raftnode.Committer: the batch Apply wrote is in the
// database, so its records may be served from the cache.
func (m *Machine) Committed() {
	for k, r := range m.staged {
		m.recent.put(k, r)
	}
	m.staged = nil
	m.publishHistory()
}

// Cached returns key's committed record from the cache: (nil, true) means
// known absent, (_, false) that the caller must read the database.
func (m *Machine) Cached(key string) (*kv.Record, bool) { return m.recent.get(key) }

func (ab *applyBatch) apply(e raftnode.Entry) []byte {
	c, err := decodeCommand(e.Data)
	if err != nil {
		return errResult(fmt.Errorf("%w: undecodable command: %w", kv.ErrInvalidArgument, err))
	}
	if c.AuthChecked && c.AuthRev != ab.m.AuthState().Rev {
		return errResult(fmt.Errorf("%w: checked at auth revision %d, now %d", kv.ErrAuthChanged, c.AuthRev, ab.m.AuthState().Rev))
	}
	switch c.Type {
	case cmdTxn:
		if c.Txn == nil {
			return errResult(fmt.Errorf("%w: txn command without txn", kv.ErrInvalidArgument))
		}
		if out, ok := ab.fastTxn(e.Time, c.Txn); ok {
			return out
		}
		res, err := ab.txn(e.Time, c.Txn)
		if err != nil {
			return errResult(err)
		}
		return encodeResult(result{Txn: res})
	case cmdBatch:
		out := result{Batch: make([][]byte, len(c.Batch))}
		for i := range c.Batch {
			if b, ok := ab.fastTxn(e.Time, &c.Batch[i]); ok {
				out.Batch[i] = b
				continue
			}
			res, err := ab.txn(e.Time, &c.Batch[i])
			if err != nil {
				out.Batch[i] = errResult(err)
				continue
			}
			out.Batch[i] = encodeResult(result{Txn: res})
		}
		return encodeResult(out)
	case cmdExpire:
		ab.expire(e.Time, c.Expire)
		return encodeResult(result{})
	case cmdMemberSet:
		if c.Member == nil || c.Member.Name == "" {
			return errResult(fmt.Errorf("%w: member without a name", kv.ErrInvalidArgument))
		}
		b, _ := json.Marshal(c.Member)
		ab.b.Set(memberKey(c.Member.Name), b)
		return encodeResult(result{})
	case cmdMemberDel:
		ab.b.Delete(memberKey(c.Name))
		return encodeResult(result{})
	case cmdAuth:
		if c.Auth == nil {
			return errResult(fmt.Errorf("%w: auth command without an operation", kv.ErrInvalidArgument))
		}
		if err := ab.m.applyAuth(ab.b, c.Auth, e.Index); err != nil {
			return errResult(err)
		}
		return encodeResult(result{})
	case cmdKeyspaceSet:
		if c.Keyspace == nil {
			return errResult(fmt.Errorf("%w: keyspace command without a policy", kv.ErrInvalidArgument))
		}
		if err := ab.applyKeyspace(e.Time, c.Keyspace.Prefix, c.Keyspace); err != nil {
			return errResult(err)
		}
		return encodeResult(result{Index: e.Index})
	case cmdKeyspaceDel:
		if err := ab.applyKeyspace(e.Time, c.Name, nil); err != nil {
			return errResult(err)
		}
		return encodeResult(result{Index: e.Index})
	case cmdClusterID:
		if err := ab.applyClusterID(c.Name); err != nil {
			return errResult(fmt.Errorf("%w: %w", kv.ErrInvalidArgument, err))
		}
		return encodeResult(result{})
	case cmdMirrorCursor:
		if err := ab.applyMirrorCursor(c.Name, c.Revision); err != nil {
			return errResult(fmt.Errorf("%w: %w", kv.ErrInvalidArgument, err))
		}
		return encodeResult(result{})
	}
	return errResult(fmt.Errorf("%w: unknown command %q", kv.ErrInvalidArgument, c.Type))
}

// view reads through a txn's own writes, then the batch's, then the database.
type view struct {
	ab     *applyBatch
	writes map[string]*kv.Record
	// order is the keys of writes in the order the txn first wrote them.
	order []string
	// before remembers what the batch held for each key the txn read, so
	// commit can fix the TTL index without reading the key again.
	before map[string]*kv.Record
}

// set records a write of the txn (nil: a delete).
func (v *view) set(key string, r *kv.Record) {
	if _, ok := v.writes[key]; !ok {
		v.order = append(v.order, key)
	}
	v.writes[key] = r
}

func (v *view) get(key string) (*kv.Record, error) {
	if r, ok := v.writes[key]; ok {
		return r, nil
	}
	if r, ok := v.before[key]; ok {
		return r, nil
	}
	r, err := v.ab.get(key)
	if err == nil {
		v.before[key] = r
	}
	return r, err
}

// live is get with keys whose expiry has passed at the entry's time treated
// as absent: the expiry sweep may not have removed them yet, but commands must
// not see them (INCR on an expired counter starts from 0). The time is the
// leader's, carried in the entry, so every replica decides the same.
func (v *view) live(key string, now int64) (*kv.Record, error) {
	r, err := v.get(key)
	if r != nil && r.Expires != 0 && r.Expires <= now {
		return nil, err
	}
	return r, err
}

func (ab *applyBatch) get(key string) (*kv.Record, error) {
	if r, ok := ab.pending[key]; ok {
		return r, nil
	}
	if r, ok := ab.m.recent.get(key); ok {
		return r, nil
	}
	raw, err := ab.m.db.Get(dataKey(key))
	if errors.Is(err, store.ErrNotFound) {
		ab.m.recent.put(key, nil)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r, err := decodeRecord(key, raw)
	if err == nil {
		ab.m.recent.put(key, r)
	}
	return r, err
}

// keysWithPrefix lists the live keys under prefix as this view sees them.
func (v *view) keysWithPrefix(prefix string) ([]string, error) {
	set := map[string]bool{}
	lo := dataKey(prefix)
	err := v.ab.m.db.Scan(lo, store.PrefixEnd(lo), func(k, _ []byte) bool {
		set[string(k[1:])] = true
		return true
	})
	if err != nil {
		return nil, err
	}
	for _, layer := range []map[string]*kv.Record{v.ab.pending, v.writes} {
		for k, r := range layer {
			if strings.HasPrefix(k, prefix) {
				set[k] = r != nil
			}
		}
	}
	keys := make([]string, 0, len(set))
	for k, live := range set {
		if live {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys, nil
}

// strongKeys refuses a transaction that touches a key of an eventual
// keyspace, as the policies stand at this point of the log: a node that
// routed it here by a table it had not loaded yet (just after a restart)
// must not write the key into the wrong engine. The caller may retry once
// the node has caught up.
func (ab *applyBatch) strongKeys(t *kv.Txn) error {
	tbl := ab.m.keyspaces
	check := func(key string) error {
		if p := tbl.Lookup(key); p.Mode != keyspace.Strong {
			return fmt.Errorf("%w: %q is in the %s keyspace %q, which this node had not loaded when it sent the write; retry",
				kv.ErrUnavailable, key, p.Mode, p.Prefix)
		}
		return nil
	}
	for _, c := range t.Compare {
		if err := check(c.Key); err != nil {
			return err
		}
	}
	for _, ops := range [][]kv.Op{t.Success, t.Failure} {
		for _, op := range ops {
			if err := check(op.Key); err != nil {
				return err
			}
			if op.Type == kv.OpRename {
				if err := check(string(op.Value)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// txn evaluates and applies one transaction atomically: on any error nothing
// of it is kept.
func (ab *applyBatch) txn(now int64, t *kv.Txn) (*kv.TxnResult, error) {
	if err := ab.strongKeys(t); err != nil {
		return nil, err
	}
	v := &view{ab: ab, writes: map[string]*kv.Record{}, before: map[string]*kv.Record{}}
	rev := ab.rev
	ok := true
	for _, c := range t.Compare {
		r, err := v.live(c.Key, now)
		if err != nil {
			return nil, err
		}
		holds, err := compare(r, c)
		if err != nil {
			return nil, err
		}
		if !holds {
			ok = false
			break
		}
	}
	ops := t.Success
	if !ok {
		ops = t.Failure
	}
	res := &kv.TxnResult{Succeeded: ok, Results: make([]kv.OpResult, 0, len(ops))}
	for _, op := range ops {
		r, err := v.applyOp(now, &rev, op)
		if err != nil {
			return nil, err
		}
		res.Results = append(res.Results, r)
	}
	ab.commit(v.writes, v.before, v.order, rev)
	ab.rev = rev
	res.Revision = rev
	return res, nil
}

// applyOp applies one op inside a txn's view, bumping *rev for each write.
func (v *view) applyOp(now int64, rev *int64, op kv.Op) (kv.OpResult, error) {
	r := kv.OpResult{Type: op.Type, Key: op.Key}
	cur, err := v.live(op.Key, now)
	if err != nil {
		return r, err
	}
	if op.ReturnPrev {
		r.Prev = cur
	}
	// write stores value at op.Key as a new version with the given expiry.
	write := func(value []byte, expires int64) *kv.Record {
		if expires != 0 && expires <= now {
			// Already expired (Redis SET PXAT in the past): the key is gone.
			if cur != nil {
				*rev++
				v.set(op.Key, nil)
			}
			return nil
		}
		*rev++
		nr := &kv.Record{Key: op.Key, Value: value, CreateRevision: *rev, ModRevision: *rev, Version: 1, Expires: expires}
		if cur != nil {
			nr.CreateRevision = cur.CreateRevision
			nr.Version = cur.Version + 1
		}
		v.set(op.Key, nr)
		return nr
	}
	keptExpiry := int64(0)
	if cur != nil {
		keptExpiry = cur.Expires
	}
	switch op.Type {
	case kv.OpGet:
		r.Record = cur
	case kv.OpPut:
		exp := putExpiry(op, now, keptExpiry)
		if nr := write(op.Value, exp); nr != nil {
			// The caller has the value; do not send it back through the log result.
			meta := *nr
			meta.Value = nil
			r.Record = &meta
		}
	case kv.OpPatch:
		base := []byte("{}")
		if cur != nil {
			base = cur.Value
			if !json.Valid(base) {
				return r, fmt.Errorf("%w: %q", kv.ErrNotJSON, op.Key)
			}
		}
		merged, err := jsonpatch.MergePatch(base, op.Value)
		if err != nil {
			return r, fmt.Errorf("%w: merge patch: %w", kv.ErrInvalidArgument, err)
		}
		r.Record = write(merged, keptExpiry)
	case kv.OpIncr:
		delta, err := strconv.ParseInt(string(op.Value), 10, 64)
		if err != nil {
			return r, fmt.Errorf("%w: delta %q", kv.ErrNotInteger, op.Value)
		}
		var n int64
		if cur != nil {
			if n, err = strconv.ParseInt(string(cur.Value), 10, 64); err != nil {
				return r, fmt.Errorf("%w: %q", kv.ErrNotInteger, op.Key)
			}
		}
		if (delta > 0 && n > math.MaxInt64-delta) || (delta < 0 && n < math.MinInt64-delta) {
			return r, fmt.Errorf("%w: increment would overflow", kv.ErrNotInteger)
		}
		r.Record = write(strconv.AppendInt(nil, n+delta, 10), keptExpiry)
	case kv.OpIncrFloat:
		delta, err := strconv.ParseFloat(string(op.Value), 64)
		if err != nil || math.IsNaN(delta) || math.IsInf(delta, 0) {
			return r, fmt.Errorf("%w: delta %q", kv.ErrNotFloat, op.Value)
		}
		var f float64
		if cur != nil {
			if f, err = strconv.ParseFloat(string(cur.Value), 64); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return r, fmt.Errorf("%w: %q", kv.ErrNotFloat, op.Key)
			}
		}
		sum := f + delta
		if math.IsNaN(sum) || math.IsInf(sum, 0) {
			return r, fmt.Errorf("%w: increment would produce NaN or Infinity", kv.ErrNotFloat)
		}
		r.Record = write(strconv.AppendFloat(nil, sum, 'f', -1, 64), keptExpiry)
	case kv.OpAppend:
		var value []byte
		if cur != nil {
			value = append(append(value, cur.Value...), op.Value...)
		} else {
			value = append(value, op.Value...)
		}
		r.Record = write(value, keptExpiry)
	case kv.OpExpire:
		if cur == nil {
			return r, nil
		}
		exp := int64(0)
		switch {
		case op.ExpiresAt != 0:
			exp = op.ExpiresAt
		case op.TTL != 0:
			exp = now + int64(op.TTL)
			if op.TTL < 0 {
				exp = now // a negative TTL deletes the key, as in Redis
			}
		}
		r.Record = write(cur.Value, exp)
		if r.Record == nil {
			r.Deleted = 1
		}
	case kv.OpRename:
		dst := string(op.Value)
		if cur == nil {
			return r, fmt.Errorf("%w: %q", kv.ErrKeyNotFound, op.Key)
		}
		if dst == op.Key {
			r.Record = cur
			break
		}
		*rev++
		v.set(op.Key, nil)
		old, err := v.live(dst, now)
		if err != nil {
			return r, err
		}
		nr := &kv.Record{Key: dst, Value: cur.Value, CreateRevision: *rev, ModRevision: *rev, Version: 1, Expires: cur.Expires}
		if old != nil {
			nr.CreateRevision, nr.Version = old.CreateRevision, old.Version+1
		}
		v.set(dst, nr)
		r.Record = nr
	case kv.OpDelete:
		if cur != nil {
			*rev++
			v.set(op.Key, nil)
			r.Deleted = 1
		}
	case kv.OpDeletePrefix:
		keys, err := v.keysWithPrefix(op.Key)
		if err != nil {
			return r, err
		}
		if len(keys) > 0 {
			*rev++
		}
		for _, k := range keys {
			v.set(k, nil)
		}
		r.Deleted = int64(len(keys))
	default:
		return r, fmt.Errorf("%w: unknown op %q", kv.ErrInvalidArgument, op.Type)
	}
	return r, nil
}

// commit moves a txn's writes into the batch, keeping the TTL index in step,
// and records their events at rev in the order of keys (nil: key order).
func (ab *applyBatch) commit(writes, before map[string]*kv.Record, keys []string, rev int64) {
	if keys == nil {
		keys = slices.Sorted(maps.Keys(writes))
	}
	var evs []kv.Event
	for _, k := range keys {
		nr := writes[k]
		old, seen := before[k]
		if !seen {
			old, _ = ab.get(k)
		}
		if ev, ok := ab.stage(k, old, nr, rev); ok {
			evs = append(evs, ev)
		}
	}
	switch len(evs) {
	case 0:
	case 1:
		ab.groups = append(ab.groups, ab.group(rev, evs[0]))
	default:
		ab.groups = append(ab.groups, watch.Group{Revision: rev, Events: evs})
	}
}

// stage moves one write of a command (nr nil: a delete) over old, the
// key's record before the command, into the batch: the TTL index follows,
// and the write's event at rev is returned (none for deleting nothing).
func (ab *applyBatch) stage(k string, old, nr *kv.Record, rev int64) (kv.Event, bool) {
	if old != nil && old.Expires != 0 && (nr == nil || nr.Expires != old.Expires) {
		ab.b.Delete(ttlKey(old.Expires, k))
	}
	if nr != nil && nr.Expires != 0 {
		ab.b.Set(ttlKey(nr.Expires, k), nil)
	}
	ab.pending[k] = nr
	switch {
	case nr != nil:
		return kv.Event{Type: kv.EventPut, Key: k, Value: nr.Value, Revision: rev}, true
	case old != nil:
		return kv.Event{Type: kv.EventDelete, Key: k, Revision: rev}, true
	}
	return kv.Event{}, false
}

// group is the history group of a command of one event, its event taken
// from the batch's slab (capacity one: nothing may append to it).
func (ab *applyBatch) group(rev int64, ev kv.Event) watch.Group {
	if len(ab.events) == 0 {
		ab.events = make([]kv.Event, min(max(cap(ab.groups)-len(ab.groups), 1), 256))
	}
	evs := ab.events[:1:1]
	ab.events = ab.events[1:]
	evs[0] = ev
	return watch.Group{Revision: rev, Events: evs}
}

// expire deletes keys whose expiry has passed at the entry's time and that
// were not rewritten since the leader saw them.
func (ab *applyBatch) expire(now int64, items []expireItem) {
	writes := map[string]*kv.Record{}
	for _, it := range items {
		r, err := ab.get(it.Key)
		if err != nil || r == nil || r.ModRevision != it.ModRevision || r.Expires == 0 || r.Expires > now {
			continue
		}
		ab.rev++
		writes[it.Key] = nil
	}
	groups := len(ab.groups)
	ab.commit(writes, nil, nil, ab.rev)
	for i := groups; i < len(ab.groups); i++ {
		for j := range ab.groups[i].Events {
			ab.groups[i].Events[j].Expired = true
		}
	}
}

func compare(r *kv.Record, c kv.Compare) (bool, error) {
	if c.Target == kv.TargetExists {
		want := c.Exists
		switch c.Op {
		case "=", "":
			return (r != nil) == want, nil
		case "!=":
			return (r != nil) != want, nil
		}
		return false, fmt.Errorf("%w: compare op %q on exists", kv.ErrInvalidArgument, c.Op)
	}
	var cmp int
	switch c.Target {
	case kv.TargetValue:
		if r == nil {
			// A missing key has no value: only "!=" holds.
			return c.Op == "!=", nil
		}
		cmp = bytes.Compare(r.Value, c.Value)
	case kv.TargetVersion, kv.TargetCreateRevision, kv.TargetModRevision:
		var have int64
		if r != nil {
			switch c.Target {
			case kv.TargetVersion:
				have = r.Version
			case kv.TargetCreateRevision:
				have = r.CreateRevision
			default:
				have = r.ModRevision
			}
		}
		switch {
		case have < c.Number:
			cmp = -1
		case have > c.Number:
			cmp = 1
		}
	default:
		return false, fmt.Errorf("%w: compare target %q", kv.ErrInvalidArgument, c.Target)
	}
	switch c.Op {
	case "=", "":
		return cmp == 0, nil
	case "!=":
		return cmp != 0, nil
	case "<":
		return cmp < 0, nil
	case ">":
		return cmp > 0, nil
	}
	return false, fmt.Errorf("%w: compare op %q", kv.ErrInvalidArgument, c.Op)
}

// putExpiry is the expiry a put gives its key at now (0: none): an absolute
// one wins over a TTL, and KEEPTTL keeps kept, the key's live expiry.
func putExpiry(op kv.Op, now, kept int64) int64 {
	switch {
	case op.ExpiresAt != 0:
		return op.ExpiresAt
	case op.TTL > 0:
		return now + int64(op.TTL)
	case op.KeepTTL:
		return kept
	}
	return 0
}
