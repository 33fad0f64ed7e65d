package kv

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/internal/store"
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
	staged map[string]*Record
	// authState is the replicated users and rules (see auth.go).
	authState atomic.Pointer[AuthState]
}

// recordCache maps keys to their current committed record (nil: known
// absent). Readers on any goroutine look keys up; the apply goroutine alone
// adds to it. When it holds more than its budget of bytes it starts over
// with a new generation; a miss only costs a pebble read. Records are never
// changed once cached (the machine makes a new record for every write).
type recordCache struct {
	gen    atomic.Pointer[cacheGen]
	bytes  int // apply goroutine only
	budget int
}

// cacheGen is one generation of the cache.
type cacheGen struct {
	shards [cacheShards]cacheShard
	// complete means the generation holds every record of the database, so
	// a key it does not hold is absent and needs no pebble read. It holds
	// from an empty database until the cache first outgrows its budget.
	complete bool
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]*Record
}

const (
	recordCacheBudget = 64 << 20
	cacheShards       = 32
)

func newCacheGen(complete bool) *cacheGen {
	g := &cacheGen{complete: complete}
	for i := range g.shards {
		g.shards[i].m = map[string]*Record{}
	}
	return g
}

func (g *cacheGen) shard(key string) *cacheShard {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return &g.shards[h%cacheShards]
}

// get returns key's committed record (nil when absent) and whether the
// cache knows it.
func (c *recordCache) get(key string) (*Record, bool) {
	g := c.gen.Load()
	if g == nil {
		return nil, false
	}
	sh := g.shard(key)
	sh.mu.RLock()
	r, ok := sh.m[key]
	sh.mu.RUnlock()
	return r, ok || g.complete
}

// put records key's committed record; apply goroutine only.
func (c *recordCache) put(key string, r *Record) {
	g := c.gen.Load()
	if g == nil || c.bytes > c.budget {
		g = newCacheGen(g != nil && g.complete && c.bytes == 0)
		c.gen.Store(g)
		c.bytes = 0
	}
	sh := g.shard(key)
	sh.mu.Lock()
	if old, ok := sh.m[key]; ok {
		c.bytes -= cacheSize(key, old)
	}
	sh.m[key] = r
	sh.mu.Unlock()
	c.bytes += cacheSize(key, r)
}

func cacheSize(key string, r *Record) int {
	if r == nil {
		return len(key) + 64
	}
	return len(key) + 96 + len(r.Value)
}

// reset starts an empty generation, complete when the database holds no records.
func (c *recordCache) reset(complete bool) {
	c.gen.Store(newCacheGen(complete))
	c.bytes = 0
}

var _ raftnode.StateMachine = (*Machine)(nil)

// NewMachine loads the machine's state from db.
func NewMachine(db *store.DB) (*Machine, error) {
	m := &Machine{db: db, recent: recordCache{budget: recordCacheBudget}}
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
	return m.loadAuth()
}

type getter interface {
	Get(key []byte) ([]byte, error)
}

func readRevision(g getter) (int64, error) {
	v, err := g.Get(revKey)
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

// command is one log entry of the strong engine.
type command struct {
	Type   string       `json:"t"`
	Txn    *Txn         `json:"txn,omitempty"`
	Batch  []Txn        `json:"batch,omitempty"`
	Expire []expireItem `json:"exp,omitempty"`
	Member *Member      `json:"member,omitempty"`
	Name   string       `json:"name,omitempty"`
	Auth   *authOp      `json:"auth,omitempty"`
	// AuthChecked says the proposer checked access against the auth state
	// of revision AuthRev; the machine refuses the command if the auth state
	// changed since (ErrAuthChanged), so a write is never applied on the
	// strength of a permission revoked before it commits.
	AuthChecked bool   `json:"-"`
	AuthRev     uint64 `json:"-"`
}

const (
	cmdTxn       = "txn"
	cmdBatch     = "batch"
	cmdExpire    = "expire"
	cmdMemberSet = "member_set"
	cmdMemberDel = "member_del"
	cmdAuth      = "auth"
)

type expireItem struct {
	Key         string `json:"k"`
	ModRevision int64  `json:"r"`
}

// result is the machine's answer to one command.
type result struct {
	Txn *TxnResult `json:"txn,omitempty"`
	// Batch holds one encoded result per txn of a batch command.
	Batch [][]byte `json:"batch,omitempty"`
	Code  string   `json:"code,omitempty"`
	Msg   string   `json:"msg,omitempty"`
}

// Error codes carried in results.
var resultCodes = map[string]error{
	"not_json":         ErrNotJSON,
	"not_integer":      ErrNotInteger,
	"not_float":        ErrNotFloat,
	"key_not_found":    ErrKeyNotFound,
	"invalid_argument": ErrInvalidArgument,
	"invalid_key":      ErrInvalidKey,
	"not_found":        ErrNotFound,
	"auth_changed":     ErrAuthChanged,
}

func errResult(err error) []byte {
	code := "invalid_argument"
	for c, e := range resultCodes {
		if errors.Is(err, e) {
			code = c
		}
	}
	return encodeResult(result{Code: code, Msg: err.Error()})
}

func decodeResult(b []byte) (*result, error) {
	r, err := decodeResultBytes(b)
	if err != nil {
		return nil, fmt.Errorf("kv: bad result from the state machine: %w", err)
	}
	if r.Code != "" {
		base, ok := resultCodes[r.Code]
		if !ok {
			base = ErrInvalidArgument
		}
		return nil, fmt.Errorf("%w: %s", base, strings.TrimPrefix(r.Msg, base.Error()+": "))
	}
	return &r, nil
}

// applyBatch is the state of one Apply call: writes are staged in pending so
// later commands of the batch read them, then written to the batch at the end.
type applyBatch struct {
	m       *Machine
	b       *store.Batch
	rev     int64
	pending map[string]*Record // nil value: deleted
}

// Apply implements raftnode.StateMachine.
func (m *Machine) Apply(b *store.Batch, entries []raftnode.Entry) [][]byte {
	// The previous batch is committed by now (the caller commits each batch
	// before applying the next), whether or not Committed was called.
	m.Committed()
	ab := &applyBatch{m: m, b: b, rev: m.rev.Load(), pending: map[string]*Record{}}
	out := make([][]byte, len(entries))
	for i, e := range entries {
		out[i] = ab.apply(e)
	}
	for k, r := range ab.pending {
		if r == nil {
			b.Delete(dataKey(k))
		} else {
			b.Set(dataKey(k), encodeRecord(r))
		}
	}
	m.staged = ab.pending
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(ab.rev))
	b.Set(revKey, v[:])
	m.rev.Store(ab.rev)
	return out
}

// Committed implements raftnode.Committer: the batch Apply wrote is in the
// database, so its records may be served from the cache.
func (m *Machine) Committed() {
	for k, r := range m.staged {
		m.recent.put(k, r)
	}
	m.staged = nil
}

// Cached returns key's committed record from the cache: (nil, true) means
// known absent, (_, false) that the caller must read the database.
func (m *Machine) Cached(key string) (*Record, bool) { return m.recent.get(key) }

func (ab *applyBatch) apply(e raftnode.Entry) []byte {
	c, err := decodeCommand(e.Data)
	if err != nil {
		return errResult(fmt.Errorf("%w: undecodable command: %w", ErrInvalidArgument, err))
	}
	if c.AuthChecked && c.AuthRev != ab.m.AuthState().Rev {
		return errResult(fmt.Errorf("%w: checked at auth revision %d, now %d", ErrAuthChanged, c.AuthRev, ab.m.AuthState().Rev))
	}
	switch c.Type {
	case cmdTxn:
		if c.Txn == nil {
			return errResult(fmt.Errorf("%w: txn command without txn", ErrInvalidArgument))
		}
		res, err := ab.txn(e.Time, c.Txn)
		if err != nil {
			return errResult(err)
		}
		return encodeResult(result{Txn: res})
	case cmdBatch:
		out := result{Batch: make([][]byte, len(c.Batch))}
		for i := range c.Batch {
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
			return errResult(fmt.Errorf("%w: member without a name", ErrInvalidArgument))
		}
		b, _ := json.Marshal(c.Member)
		ab.b.Set(memberKey(c.Member.Name), b)
		return encodeResult(result{})
	case cmdMemberDel:
		ab.b.Delete(memberKey(c.Name))
		return encodeResult(result{})
	case cmdAuth:
		if c.Auth == nil {
			return errResult(fmt.Errorf("%w: auth command without an operation", ErrInvalidArgument))
		}
		if err := ab.m.applyAuth(ab.b, c.Auth, e.Index); err != nil {
			return errResult(err)
		}
		return encodeResult(result{})
	}
	return errResult(fmt.Errorf("%w: unknown command %q", ErrInvalidArgument, c.Type))
}

// view reads through a txn's own writes, then the batch's, then the database.
type view struct {
	ab     *applyBatch
	writes map[string]*Record
	// before remembers what the batch held for each key the txn read, so
	// commit can fix the TTL index without reading the key again.
	before map[string]*Record
}

func (v *view) get(key string) (*Record, error) {
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
func (v *view) live(key string, now int64) (*Record, error) {
	r, err := v.get(key)
	if r != nil && r.Expires != 0 && r.Expires <= now {
		return nil, err
	}
	return r, err
}

func (ab *applyBatch) get(key string) (*Record, error) {
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
	for _, layer := range []map[string]*Record{v.ab.pending, v.writes} {
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

// txn evaluates and applies one transaction atomically: on any error nothing
// of it is kept.
func (ab *applyBatch) txn(now int64, t *Txn) (*TxnResult, error) {
	v := &view{ab: ab, writes: map[string]*Record{}, before: map[string]*Record{}}
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
	res := &TxnResult{Succeeded: ok, Results: make([]OpResult, 0, len(ops))}
	for _, op := range ops {
		r, err := v.applyOp(now, &rev, op)
		if err != nil {
			return nil, err
		}
		res.Results = append(res.Results, r)
	}
	ab.commit(v.writes, v.before)
	ab.rev = rev
	res.Revision = rev
	return res, nil
}

// applyOp applies one op inside a txn's view, bumping *rev for each write.
func (v *view) applyOp(now int64, rev *int64, op Op) (OpResult, error) {
	r := OpResult{Type: op.Type, Key: op.Key}
	cur, err := v.live(op.Key, now)
	if err != nil {
		return r, err
	}
	if op.ReturnPrev {
		r.Prev = cur
	}
	// write stores value at op.Key as a new version with the given expiry.
	write := func(value []byte, expires int64) *Record {
		if expires != 0 && expires <= now {
			// Already expired (Redis SET PXAT in the past): the key is gone.
			if cur != nil {
				*rev++
				v.writes[op.Key] = nil
			}
			return nil
		}
		*rev++
		nr := &Record{Key: op.Key, Value: value, CreateRevision: *rev, ModRevision: *rev, Version: 1, Expires: expires}
		if cur != nil {
			nr.CreateRevision = cur.CreateRevision
			nr.Version = cur.Version + 1
		}
		v.writes[op.Key] = nr
		return nr
	}
	keptExpiry := int64(0)
	if cur != nil {
		keptExpiry = cur.Expires
	}
	switch op.Type {
	case OpGet:
		r.Record = cur
	case OpPut:
		exp := int64(0)
		switch {
		case op.ExpiresAt != 0:
			exp = op.ExpiresAt
		case op.TTL > 0:
			exp = now + int64(op.TTL)
		case op.KeepTTL:
			exp = keptExpiry
		}
		if nr := write(op.Value, exp); nr != nil {
			// The caller has the value; do not send it back through the log result.
			meta := *nr
			meta.Value = nil
			r.Record = &meta
		}
	case OpPatch:
		base := []byte("{}")
		if cur != nil {
			base = cur.Value
			if !json.Valid(base) {
				return r, fmt.Errorf("%w: %q", ErrNotJSON, op.Key)
			}
		}
		merged, err := jsonpatch.MergePatch(base, op.Value)
		if err != nil {
			return r, fmt.Errorf("%w: merge patch: %w", ErrInvalidArgument, err)
		}
		r.Record = write(merged, keptExpiry)
	case OpIncr:
		delta, err := strconv.ParseInt(string(op.Value), 10, 64)
		if err != nil {
			return r, fmt.Errorf("%w: delta %q", ErrNotInteger, op.Value)
		}
		var n int64
		if cur != nil {
			if n, err = strconv.ParseInt(string(cur.Value), 10, 64); err != nil {
				return r, fmt.Errorf("%w: %q", ErrNotInteger, op.Key)
			}
		}
		if (delta > 0 && n > math.MaxInt64-delta) || (delta < 0 && n < math.MinInt64-delta) {
			return r, fmt.Errorf("%w: increment would overflow", ErrNotInteger)
		}
		r.Record = write(strconv.AppendInt(nil, n+delta, 10), keptExpiry)
	case OpIncrFloat:
		delta, err := strconv.ParseFloat(string(op.Value), 64)
		if err != nil || math.IsNaN(delta) || math.IsInf(delta, 0) {
			return r, fmt.Errorf("%w: delta %q", ErrNotFloat, op.Value)
		}
		var f float64
		if cur != nil {
			if f, err = strconv.ParseFloat(string(cur.Value), 64); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return r, fmt.Errorf("%w: %q", ErrNotFloat, op.Key)
			}
		}
		sum := f + delta
		if math.IsNaN(sum) || math.IsInf(sum, 0) {
			return r, fmt.Errorf("%w: increment would produce NaN or Infinity", ErrNotFloat)
		}
		r.Record = write(strconv.AppendFloat(nil, sum, 'f', -1, 64), keptExpiry)
	case OpAppend:
		var value []byte
		if cur != nil {
			value = append(append(value, cur.Value...), op.Value...)
		} else {
			value = append(value, op.Value...)
		}
		r.Record = write(value, keptExpiry)
	case OpExpire:
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
	case OpRename:
		dst := string(op.Value)
		if cur == nil {
			return r, fmt.Errorf("%w: %q", ErrKeyNotFound, op.Key)
		}
		if dst == op.Key {
			r.Record = cur
			break
		}
		*rev++
		v.writes[op.Key] = nil
		old, err := v.live(dst, now)
		if err != nil {
			return r, err
		}
		nr := &Record{Key: dst, Value: cur.Value, CreateRevision: *rev, ModRevision: *rev, Version: 1, Expires: cur.Expires}
		if old != nil {
			nr.CreateRevision, nr.Version = old.CreateRevision, old.Version+1
		}
		v.writes[dst] = nr
		r.Record = nr
	case OpDelete:
		if cur != nil {
			*rev++
			v.writes[op.Key] = nil
			r.Deleted = 1
		}
	case OpDeletePrefix:
		keys, err := v.keysWithPrefix(op.Key)
		if err != nil {
			return r, err
		}
		if len(keys) > 0 {
			*rev++
		}
		for _, k := range keys {
			v.writes[k] = nil
		}
		r.Deleted = int64(len(keys))
	default:
		return r, fmt.Errorf("%w: unknown op %q", ErrInvalidArgument, op.Type)
	}
	return r, nil
}

// commit moves a txn's writes into the batch, keeping the TTL index in step.
func (ab *applyBatch) commit(writes, before map[string]*Record) {
	for k, nr := range writes {
		old, seen := before[k]
		if !seen {
			old, _ = ab.get(k)
		}
		if old != nil && old.Expires != 0 && (nr == nil || nr.Expires != old.Expires) {
			ab.b.Delete(ttlKey(old.Expires, k))
		}
		if nr != nil && nr.Expires != 0 {
			ab.b.Set(ttlKey(nr.Expires, k), nil)
		}
		ab.pending[k] = nr
	}
}

// expire deletes keys whose expiry has passed at the entry's time and that
// were not rewritten since the leader saw them.
func (ab *applyBatch) expire(now int64, items []expireItem) {
	writes := map[string]*Record{}
	for _, it := range items {
		r, err := ab.get(it.Key)
		if err != nil || r == nil || r.ModRevision != it.ModRevision || r.Expires == 0 || r.Expires > now {
			continue
		}
		ab.rev++
		writes[it.Key] = nil
	}
	ab.commit(writes, nil)
}

func compare(r *Record, c Compare) (bool, error) {
	if c.Target == TargetExists {
		want := c.Exists
		switch c.Op {
		case "=", "":
			return (r != nil) == want, nil
		case "!=":
			return (r != nil) != want, nil
		}
		return false, fmt.Errorf("%w: compare op %q on exists", ErrInvalidArgument, c.Op)
	}
	var cmp int
	switch c.Target {
	case TargetValue:
		if r == nil {
			// A missing key has no value: only "!=" holds.
			return c.Op == "!=", nil
		}
		cmp = bytes.Compare(r.Value, c.Value)
	case TargetVersion, TargetCreateRevision, TargetModRevision:
		var have int64
		if r != nil {
			switch c.Target {
			case TargetVersion:
				have = r.Version
			case TargetCreateRevision:
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
		return false, fmt.Errorf("%w: compare target %q", ErrInvalidArgument, c.Target)
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
	return false, fmt.Errorf("%w: compare op %q", ErrInvalidArgument, c.Op)
}
