package kvtest

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/cairnkv/cairn/internal/eventual/hlc"
	"github.com/cairnkv/cairn/internal/watch"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// Eventual serves the node's eventual keyspaces with e (see FakeEventual).
func Eventual(e *FakeEventual) Option {
	return func(o *options) { o.eventual = e }
}

// FakeEventual stands in for the eventual engine in front-end tests: one
// in-memory copy of every key, stamped with hybrid logical clock timestamps
// in their text form, answering writes with Acks of Replicas. It keeps what
// the front ends rely on from the engine (records with a timestamp and an
// origin and no revisions, write acks, refusals of what needs agreement, a
// ring), not the engine's replication, which its own tests cover.
//
// Set its fields before the service starts; Reads and Writes are safe to
// read once the requests that fill them have returned.
type FakeEventual struct {
	// Node is the origin of every write (default Name).
	Node string
	// Replicas is how many copies a write has; Reachable how many of them
	// acknowledge (default: Replicas, 3 if unset). A write whose quorum is
	// more than Reachable fails with kv.ErrUnavailable, as the engine's does.
	Replicas, Reachable int
	// WriteQuorum is the quorum of a write that names none (default 1).
	WriteQuorum int
	// Members are the ring's members (default: Node), all healthy but Node,
	// which is "self".
	Members []string

	mu     sync.Mutex
	data   map[string]*kv.Record
	last   hlc.Timestamp
	reads  []kv.ReadOptions
	writes []kv.Txn
	feed   watch.Hub
}

var (
	_ kv.Engine    = (*FakeEventual)(nil)
	_ kv.Placement = (*FakeEventual)(nil)
	_ kv.Watcher   = (*FakeEventual)(nil)
)

func (f *FakeEventual) init() {
	if f.Node == "" {
		f.Node = Name
	}
	if f.Replicas == 0 {
		f.Replicas = 3
	}
	if f.Reachable == 0 {
		f.Reachable = f.Replicas
	}
	if f.WriteQuorum == 0 {
		f.WriteQuorum = 1
	}
	if len(f.Members) == 0 {
		f.Members = []string{f.Node}
	}
	f.data = map[string]*kv.Record{}
}

// Watch implements kv.Watcher: a change feed from now, one batch per
// transaction, as the engine's.
func (f *FakeEventual) Watch(ctx context.Context, prefix string, fromRevision int64) (iter.Seq2[[]kv.Event, error], error) {
	if fromRevision != 0 {
		return nil, fmt.Errorf("%w: from_revision applies to strong keyspaces", kv.ErrInvalidArgument)
	}
	return f.feed.Subscribe(prefix, 64).Live(ctx), nil
}

// Reads returns the options of every Get and List, in order.
func (f *FakeEventual) Reads() []kv.ReadOptions {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reads)
}

// Writes returns every transaction applied or refused, in order.
func (f *FakeEventual) Writes() []kv.Txn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.writes)
}

// Ready implements kv.Engine.
func (f *FakeEventual) Ready() error { return nil }

// Get implements kv.Engine.
func (f *FakeEventual) Get(_ context.Context, key string, o kv.ReadOptions) (*kv.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads = append(f.reads, o)
	return f.live(key), nil
}

// live returns a copy of key's record, nil when absent or expired.
func (f *FakeEventual) live(key string) *kv.Record {
	r := f.data[key]
	if r == nil || (r.Expires != 0 && r.Expires <= time.Now().UnixNano()) {
		return nil
	}
	c := *r
	c.Value = slices.Clone(r.Value)
	return &c
}

// List implements kv.Engine.
func (f *FakeEventual) List(_ context.Context, prefix string, o kv.ListOptions, visible func(string) bool) (*kv.ListResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads = append(f.reads, o.ReadOptions)
	keys := make([]string, 0, len(f.data))
	for k := range f.data {
		if strings.HasPrefix(k, prefix) && k > o.After {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	res := &kv.ListResult{}
	for _, k := range keys {
		r := f.live(k)
		if r == nil || !visible(k) {
			continue
		}
		if o.Limit > 0 && len(res.Items) == o.Limit {
			res.More = true
			break
		}
		if o.KeysOnly {
			r.Value = nil
		}
		res.Items = append(res.Items, r)
	}
	return res, nil
}

// Apply implements kv.Engine: each transaction is one batch with one
// stamp, refused whole when it needs agreement.
func (f *FakeEventual) Apply(_ context.Context, txns []kv.Txn, _ uint64) ([]*kv.TxnResult, []error, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	res := make([]*kv.TxnResult, len(txns))
	errs := make([]error, len(txns))
	for i, t := range txns {
		f.writes = append(f.writes, t)
		res[i], errs[i] = f.apply(t)
		if errs[i] == nil {
			f.publish(res[i])
		}
	}
	return res, errs, nil
}

func (f *FakeEventual) apply(t kv.Txn) (*kv.TxnResult, error) {
	if len(t.Compare) > 0 {
		return nil, refuse(t.Compare[0].Key, "compares")
	}
	for _, op := range t.Success {
		switch {
		case op.ReturnPrev && op.Type != kv.OpExpire: // PERSIST asks for it
			return nil, refuse(op.Key, "reading the previous value in a write")
		case op.Type == kv.OpIncr || op.Type == kv.OpIncrFloat || op.Type == kv.OpAppend || op.Type == kv.OpRename:
			return nil, refuse(op.Key, string(op.Type))
		}
	}
	w := t.WriteQuorum
	if w == 0 {
		w = f.WriteQuorum
	}
	if w > f.Replicas {
		return nil, fmt.Errorf("%w: write quorum %d is more than the %d replicas", kv.ErrInvalidArgument, w, f.Replicas)
	}
	if w > f.Reachable {
		return nil, fmt.Errorf("%w: %d of %d replicas acknowledged, the write needs %d", kv.ErrUnavailable, f.Reachable, f.Replicas, w)
	}
	now := time.Now()
	f.last = max(f.last+1, hlc.Make(now.UnixMilli(), 0))
	stamp := hlc.Format(f.last)
	out := &kv.TxnResult{Succeeded: true, Timestamp: stamp, Acks: f.Reachable, Replicas: f.Replicas}
	for _, op := range t.Success {
		r := kv.OpResult{Type: op.Type, Key: op.Key}
		cur := f.live(op.Key)
		switch op.Type {
		case kv.OpGet:
			r.Record = cur
		case kv.OpPut, kv.OpPatch:
			rec := &kv.Record{Key: op.Key, Value: op.Value, Timestamp: stamp, Origin: f.Node, Acks: f.Reachable, Replicas: f.Replicas}
			switch {
			case op.Type == kv.OpPatch:
				doc := []byte("{}")
				if cur != nil {
					doc, rec.Expires = cur.Value, cur.Expires
				}
				merged, err := jsonpatch.MergePatch(doc, op.Value)
				if err != nil {
					return nil, fmt.Errorf("%w: %q", kv.ErrNotJSON, op.Key)
				}
				rec.Value = merged
			case op.ExpiresAt != 0:
				rec.Expires = op.ExpiresAt
			case op.TTL > 0:
				rec.Expires = now.Add(op.TTL).UnixNano()
			case op.KeepTTL && cur != nil:
				rec.Expires = cur.Expires
			}
			f.data[op.Key] = rec
			c := *rec
			r.Record = &c
		case kv.OpDelete:
			if cur != nil {
				r.Deleted = 1
			}
			delete(f.data, op.Key)
		case kv.OpDeletePrefix:
			for k := range f.data {
				if strings.HasPrefix(k, op.Key) {
					if f.live(k) != nil {
						r.Deleted++
					}
					delete(f.data, k)
				}
			}
		case kv.OpExpire:
			if cur == nil {
				break
			}
			if op.ReturnPrev {
				r.Prev = cur
			}
			rec := f.data[op.Key]
			rec.Timestamp, rec.Origin = stamp, f.Node
			switch {
			case op.ExpiresAt != 0:
				rec.Expires = op.ExpiresAt
			case op.TTL != 0:
				rec.Expires = now.Add(op.TTL).UnixNano() // a negative TTL deletes, as in Redis
			default:
				rec.Expires = 0
			}
			if r.Record = f.live(op.Key); r.Record == nil {
				delete(f.data, op.Key)
				r.Deleted = 1
			}
		default:
			return nil, refuse(op.Key, string(op.Type))
		}
		out.Results = append(out.Results, r)
	}
	return out, nil
}

// publish sends the feed the keys a transaction changed, as they are now.
func (f *FakeEventual) publish(res *kv.TxnResult) {
	var evs []kv.Event
	for _, r := range res.Results {
		switch r.Type {
		case kv.OpGet:
			continue
		case kv.OpDeletePrefix:
			continue // the keys are gone; the fake keeps no tombstones to name them
		}
		if rec := f.live(r.Key); rec != nil {
			evs = append(evs, kv.Event{Type: kv.EventPut, Key: r.Key, Value: rec.Value, Timestamp: rec.Timestamp, Origin: rec.Origin, Expires: rec.Expires})
		} else {
			evs = append(evs, kv.Event{Type: kv.EventDelete, Key: r.Key, Timestamp: res.Timestamp, Origin: f.Node})
		}
	}
	if len(evs) > 0 {
		f.feed.Publish(watch.Group{Events: evs})
	}
}

// refuse is the engine's answer to what needs agreement among replicas.
func refuse(key, what string) error {
	return fmt.Errorf("%w: %q is in an eventual keyspace, where %s would need agreement among replicas", kv.ErrUnsupportedMode, key, what)
}

// Ring implements kv.Placement: every member an equal share, the
// preference list the first replicas members in name order.
func (f *FakeEventual) Ring(key string, replicas int) *kv.RingInfo {
	names := slices.Sorted(slices.Values(f.Members))
	info := &kv.RingInfo{Vnodes: 2048}
	for _, n := range names {
		info.Members = append(info.Members, kv.RingMember{Name: n, Health: f.health(n), Share: 1 / float64(len(names))})
	}
	if key != "" {
		info.Key, info.Hash = key, "0000000000000000"
		if replicas == 0 || replicas > len(names) {
			replicas = len(names)
		}
		info.Replicas, info.Preference = replicas, names[:replicas]
	}
	return info
}

// Health implements kv.Placement.
func (f *FakeEventual) Health() map[string]string {
	h := map[string]string{}
	for _, n := range f.Members {
		h[n] = f.health(n)
	}
	return h
}

func (f *FakeEventual) health(name string) string {
	if name == f.Node {
		return kv.HealthSelf
	}
	return kv.HealthHealthy
}

// MustEventualKeyspace creates an eventual keyspace policy for prefix
// (the service must have been started with Eventual).
func MustEventualKeyspace(t testing.TB, svc *kv.Service, prefix string) {
	t.Helper()
	if _, err := svc.PutKeyspace(Ctx(t), keyspace.Policy{Prefix: prefix, Mode: keyspace.Eventual, Replicas: 3, SloppyQuorum: true}); err != nil {
		t.Fatalf("kvtest: eventual keyspace %q: %v", prefix, err)
	}
}
