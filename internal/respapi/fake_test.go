package respapi

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/kv"
)

// fakeService is an in-memory Service for tests. It applies transactions with
// the engine's semantics (revisions, TTLs, compares, all-or-nothing ops); any
// function field that is set (through set) replaces the method of the same name.
type fakeService struct {
	GetFn      func(ctx context.Context, key string, o kv.ReadOptions) (*kv.Record, error)
	ListFn     func(ctx context.Context, prefix string, o kv.ListOptions) (*kv.ListResult, error)
	TxnFn      func(ctx context.Context, t kv.Txn) (*kv.TxnResult, error)
	TxnBatchFn func(ctx context.Context, txns []kv.Txn) ([]*kv.TxnResult, []error, error)
	StatusFn   func(ctx context.Context) (*kv.Status, error)
	MembersFn  func(ctx context.Context) ([]kv.Member, error)

	mu       sync.Mutex
	data     map[string]*kv.Record
	rev      int64
	batches  []int            // size of every TxnBatch call
	txns     int              // Txn calls
	reads    []kv.ReadOptions // options of every Get and List
	calls    []string         // "get", "list", "batch", "txn" in call order
	added    []kv.MemberSpec  // AddMember calls
	removed  []string         // RemoveMember calls
	snapshot int              // Snapshot calls
	members  []kv.Member
	adminErr error // CheckAdmin's answer
}

func (f *fakeService) CheckAdmin(context.Context) error { return f.adminErr }

// staticAuth is an Authenticator over fixed passwords; authentication is
// required whenever it has users.
type staticAuth map[string]string

func (a staticAuth) Authenticate(user, password string) (auth.Identity, error) {
	if p, ok := a[user]; ok && p == password {
		return auth.Identity{Name: user, Via: "password"}, nil
	}
	return auth.Identity{}, kv.ErrUnauthenticated
}

func (a staticAuth) AuthRequired() bool { return len(a) > 0 }

func newFake() *fakeService {
	return &fakeService{data: map[string]*kv.Record{}, members: []kv.Member{
		{Name: "n1", PeerAddr: "127.0.0.1:7701", ClientURL: "http://127.0.0.1:7700", RESPAddr: "127.0.0.1:7702", Voter: true, Leader: true},
		{Name: "n2", PeerAddr: "127.0.0.1:7711", RESPAddr: "127.0.0.1:7712", Voter: true},
	}}
}

var _ Service = (*fakeService)(nil)

func cloneRecord(r *kv.Record) *kv.Record {
	if r == nil {
		return nil
	}
	c := *r
	c.Value = bytes.Clone(r.Value)
	return &c
}

func (f *fakeService) Get(ctx context.Context, key string, o kv.ReadOptions) (*kv.Record, error) {
	f.mu.Lock()
	f.reads = append(f.reads, o)
	f.calls = append(f.calls, "get")
	fn := f.GetFn
	f.mu.Unlock()
	if fn != nil {
		return fn(ctx, key, o)
	}
	if err := kv.ValidateKey(key); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.data[key]
	if r == nil {
		return nil, fmt.Errorf("%w: %q", kv.ErrKeyNotFound, key)
	}
	return cloneRecord(r), nil
}

func (f *fakeService) List(ctx context.Context, prefix string, o kv.ListOptions) (*kv.ListResult, error) {
	f.mu.Lock()
	f.reads = append(f.reads, o.ReadOptions)
	f.calls = append(f.calls, "list")
	fn := f.ListFn
	f.mu.Unlock()
	if fn != nil {
		return fn(ctx, prefix, o)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var keys []string
	for k := range f.data {
		if strings.HasPrefix(k, prefix) && (o.After == "" || k > o.After) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	res := &kv.ListResult{Revision: f.rev, Items: []*kv.Record{}}
	for _, k := range keys {
		if o.Limit > 0 && len(res.Items) == o.Limit {
			res.More = true
			break
		}
		r := cloneRecord(f.data[k])
		if o.KeysOnly {
			r.Value = nil
		}
		res.Items = append(res.Items, r)
	}
	return res, nil
}

func (f *fakeService) Txn(ctx context.Context, t kv.Txn) (*kv.TxnResult, error) {
	f.mu.Lock()
	f.txns++
	f.calls = append(f.calls, "txn")
	fn := f.TxnFn
	f.mu.Unlock()
	if fn != nil {
		return fn(ctx, t)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.apply(t)
}

func (f *fakeService) TxnBatch(ctx context.Context, txns []kv.Txn) ([]*kv.TxnResult, []error, error) {
	f.mu.Lock()
	f.batches = append(f.batches, len(txns))
	f.calls = append(f.calls, "batch")
	fn := f.TxnBatchFn
	f.mu.Unlock()
	if fn != nil {
		return fn(ctx, txns)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	res := make([]*kv.TxnResult, len(txns))
	errs := make([]error, len(txns))
	for i, t := range txns {
		res[i], errs[i] = f.apply(t)
	}
	return res, errs, nil
}

// apply runs one transaction atomically; f.mu is held.
func (f *fakeService) apply(t kv.Txn) (*kv.TxnResult, error) {
	now := time.Now().UnixNano()
	writes := map[string]*kv.Record{}
	deleted := map[string]bool{}
	get := func(k string) *kv.Record {
		if deleted[k] {
			return nil
		}
		if r, ok := writes[k]; ok {
			return r
		}
		return f.data[k]
	}
	rev := f.rev
	put := func(k string, value []byte, exp int64, cur *kv.Record) *kv.Record {
		if exp != 0 && exp <= now {
			if cur != nil {
				rev++
				deleted[k] = true
				delete(writes, k)
			}
			return nil
		}
		rev++
		nr := &kv.Record{Key: k, Value: value, CreateRevision: rev, ModRevision: rev, Version: 1, Expires: exp}
		if cur != nil {
			nr.CreateRevision, nr.Version = cur.CreateRevision, cur.Version+1
		}
		delete(deleted, k)
		writes[k] = nr
		return nr
	}
	for _, op := range append(append([]kv.Op{}, t.Success...), t.Failure...) {
		if op.Type != kv.OpDeletePrefix {
			if err := kv.ValidateKey(op.Key); err != nil {
				return nil, err
			}
		}
		if (op.Type == kv.OpPut || op.Type == kv.OpAppend) && len(op.Value) > 1<<20 {
			return nil, fmt.Errorf("%w: %d bytes", kv.ErrValueTooLarge, len(op.Value))
		}
	}
	ok := true
	for _, c := range t.Compare {
		r := get(c.Key)
		switch c.Target {
		case kv.TargetExists:
			ok = ok && (r != nil) == c.Exists
		case kv.TargetModRevision:
			var have int64
			if r != nil {
				have = r.ModRevision
			}
			ok = ok && have == c.Number
		default:
			return nil, fmt.Errorf("%w: target %q", kv.ErrInvalidArgument, c.Target)
		}
	}
	ops := t.Success
	if !ok {
		ops = t.Failure
	}
	res := &kv.TxnResult{Succeeded: ok}
	for _, op := range ops {
		cur := get(op.Key)
		r := kv.OpResult{Type: op.Type, Key: op.Key}
		if op.ReturnPrev {
			r.Prev = cloneRecord(cur)
		}
		keep := int64(0)
		if cur != nil {
			keep = cur.Expires
		}
		switch op.Type {
		case kv.OpGet:
			r.Record = cloneRecord(cur)
		case kv.OpPut:
			exp := int64(0)
			switch {
			case op.ExpiresAt != 0:
				exp = op.ExpiresAt
			case op.TTL > 0:
				exp = now + int64(op.TTL)
			case op.KeepTTL:
				exp = keep
			}
			r.Record = cloneRecord(put(op.Key, bytes.Clone(op.Value), exp, cur))
		case kv.OpDelete:
			if cur != nil {
				rev++
				deleted[op.Key] = true
				delete(writes, op.Key)
				r.Deleted = 1
			}
		case kv.OpIncr:
			d, err := strconv.ParseInt(string(op.Value), 10, 64)
			if err != nil {
				return nil, kv.ErrNotInteger
			}
			var n int64
			if cur != nil {
				if n, err = strconv.ParseInt(string(cur.Value), 10, 64); err != nil {
					return nil, fmt.Errorf("%w: %q", kv.ErrNotInteger, op.Key)
				}
			}
			if (d > 0 && n > math.MaxInt64-d) || (d < 0 && n < math.MinInt64-d) {
				return nil, kv.ErrNotInteger
			}
			r.Record = cloneRecord(put(op.Key, strconv.AppendInt(nil, n+d, 10), keep, cur))
		case kv.OpIncrFloat:
			d, err := strconv.ParseFloat(string(op.Value), 64)
			if err != nil {
				return nil, kv.ErrNotFloat
			}
			var x float64
			if cur != nil {
				if x, err = strconv.ParseFloat(string(cur.Value), 64); err != nil {
					return nil, kv.ErrNotFloat
				}
			}
			r.Record = cloneRecord(put(op.Key, strconv.AppendFloat(nil, x+d, 'f', -1, 64), keep, cur))
		case kv.OpAppend:
			var v []byte
			if cur != nil {
				v = bytes.Clone(cur.Value)
			}
			r.Record = cloneRecord(put(op.Key, append(v, op.Value...), keep, cur))
		case kv.OpExpire:
			if cur == nil {
				break
			}
			exp := int64(0)
			switch {
			case op.ExpiresAt != 0:
				exp = op.ExpiresAt
			case op.TTL != 0:
				exp = now + int64(op.TTL)
			}
			r.Record = cloneRecord(put(op.Key, cur.Value, exp, cur))
			if r.Record == nil {
				r.Deleted = 1
			}
		case kv.OpRename:
			if cur == nil {
				return nil, fmt.Errorf("%w: %q", kv.ErrKeyNotFound, op.Key)
			}
			dst := string(op.Value)
			if err := kv.ValidateKey(dst); err != nil {
				return nil, err
			}
			if dst != op.Key {
				rev++
				deleted[op.Key] = true
				delete(writes, op.Key)
				old := get(dst)
				nr := &kv.Record{Key: dst, Value: cur.Value, CreateRevision: rev, ModRevision: rev, Version: 1, Expires: cur.Expires}
				if old != nil {
					nr.Version = old.Version + 1
				}
				delete(deleted, dst)
				writes[dst] = nr
			}
		default:
			return nil, fmt.Errorf("%w: op %q", kv.ErrInvalidArgument, op.Type)
		}
		res.Results = append(res.Results, r)
	}
	for k := range deleted {
		delete(f.data, k)
	}
	for k, r := range writes {
		f.data[k] = r
	}
	f.rev = rev
	res.Revision = rev
	return res, nil
}

func (f *fakeService) Members(ctx context.Context) ([]kv.Member, error) {
	f.mu.Lock()
	fn := f.MembersFn
	f.mu.Unlock()
	if fn != nil {
		return fn(ctx)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]kv.Member(nil), f.members...), nil
}

func (f *fakeService) AddMember(_ context.Context, m kv.MemberSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, x := range f.members {
		if x.Name == m.Name {
			return kv.ErrMemberExists
		}
	}
	f.added = append(f.added, m)
	f.members = append(f.members, kv.Member{Name: m.Name, PeerAddr: m.PeerAddr, ClientURL: m.ClientURL, RESPAddr: m.RESPAddr, Voter: !m.NonVoter})
	return nil
}

func (f *fakeService) RemoveMember(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, x := range f.members {
		if x.Name == name {
			f.removed = append(f.removed, name)
			f.members = append(f.members[:i], f.members[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("%w: %q", kv.ErrMemberNotFound, name)
}

func (f *fakeService) Status(ctx context.Context) (*kv.Status, error) {
	f.mu.Lock()
	fn := f.StatusFn
	f.mu.Unlock()
	if fn != nil {
		return fn(ctx)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return &kv.Status{Name: "n1", State: "leader", Leader: "n1", LeaderAddr: "127.0.0.1:7701", Term: 3,
		CommitIndex: 10, AppliedIndex: 10, LastIndex: 10, Revision: f.rev, Members: len(f.members)}, nil
}

func (f *fakeService) Snapshot() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snapshot++
	return nil
}

func (f *fakeService) Ready() error { return nil }

// set changes the fake's function fields while servers may be calling it.
func (f *fakeService) set(change func(f *fakeService)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

// stats returns copies of the recorded calls.
func (f *fakeService) stats() (batches []int, txns int, calls []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.batches...), f.txns, append([]string(nil), f.calls...)
}

func (f *fakeService) resetStats() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches, f.txns, f.calls, f.reads = nil, 0, nil, nil
}
