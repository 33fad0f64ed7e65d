package kv

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cairnkv/cairn/keyspace"
)

// fakeEngine records what the service asks of it and answers from a map.
type fakeEngine struct {
	name    string
	data    map[string]*Record
	applied [][]Txn
	authRev []uint64
}

func newFakeEngine(name string) *fakeEngine {
	return &fakeEngine{name: name, data: map[string]*Record{}}
}

func (f *fakeEngine) Get(_ context.Context, key string, _ ReadOptions) (*Record, error) {
	return f.data[key], nil
}

func (f *fakeEngine) List(_ context.Context, prefix string, o ListOptions, visible func(string) bool) (*ListResult, error) {
	res := &ListResult{}
	var keys []string
	for k := range f.data {
		if strings.HasPrefix(k, prefix) && k > o.After && visible(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	if o.Limit > 0 && len(keys) > o.Limit {
		keys, res.More = keys[:o.Limit], true
	}
	for _, k := range keys {
		res.Items = append(res.Items, f.data[k])
	}
	return res, nil
}

func (f *fakeEngine) Apply(_ context.Context, txns []Txn, authRev uint64) ([]*TxnResult, []error, error) {
	f.applied = append(f.applied, txns)
	f.authRev = append(f.authRev, authRev)
	res := make([]*TxnResult, len(txns))
	for i, t := range txns {
		r := &TxnResult{Succeeded: true}
		for _, op := range t.Success {
			if op.Type == OpPut {
				f.data[op.Key] = &Record{Key: op.Key, Value: op.Value}
			}
			r.Results = append(r.Results, OpResult{Type: op.Type, Key: op.Key, Record: &Record{Key: op.Key}})
		}
		res[i] = r
	}
	return res, make([]error, len(txns)), nil
}

func (f *fakeEngine) Ready() error { return nil }

// fakeControl is a control plane with a settable policy table and nothing
// replicated.
type fakeControl struct {
	Control // methods a test does not set panic
	table   *keyspace.Table
	auth    *AuthState
}

func (c *fakeControl) Keyspaces() *keyspace.Table                   { return c.table }
func (c *fakeControl) AuthState() *AuthState                        { return c.auth }
func (c *fakeControl) Barrier(context.Context) error                { return nil }
func (c *fakeControl) IsStale() bool                                { return false }
func (c *fakeControl) Replayed() bool                               { return true }
func (c *fakeControl) ChangeAuth(context.Context, AuthChange) error { return nil }

// newRouted returns a service whose "ev/" keyspace is eventual, served by a
// second engine, beside the strong default.
func newRouted(t *testing.T) (*Service, *fakeEngine, *fakeEngine) {
	t.Helper()
	tbl := keyspace.NewTable()
	if err := tbl.Set([]keyspace.Policy{{Prefix: "ev/", Mode: keyspace.Eventual, Replicas: 3, WriteQuorum: 2}}); err != nil {
		t.Fatal(err)
	}
	strong, eventual := newFakeEngine("strong"), newFakeEngine("eventual")
	svc := NewService(Config{}, map[keyspace.Mode]Engine{keyspace.Strong: strong, keyspace.Eventual: eventual},
		&fakeControl{table: tbl, auth: &AuthState{Rev: 7}})
	return svc, strong, eventual
}

func TestRoutingByKeyspace(t *testing.T) {
	svc, strong, eventual := newRouted(t)
	ctx := context.Background()
	if _, err := svc.Put(ctx, "a", []byte("1"), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Put(ctx, "ev/b", []byte("2"), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if strong.data["a"] == nil || strong.data["ev/b"] != nil || eventual.data["ev/b"] == nil || eventual.data["a"] != nil {
		t.Fatalf("writes went to the wrong engine: strong %v, eventual %v", strong.data, eventual.data)
	}
	if strong.authRev[0] != 7 {
		t.Fatalf("auth revision passed to the engine: %d, want 7", strong.authRev[0])
	}
	if r, err := svc.Get(ctx, "ev/b", ReadOptions{}); err != nil || string(r.Value) != "2" {
		t.Fatalf("get from the eventual engine: %v %v", r, err)
	}
	if _, err := svc.Get(ctx, "ev/missing", ReadOptions{}); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	// A transaction or a prefix that spans both modes is refused, and
	// nothing is applied.
	n := len(strong.applied) + len(eventual.applied)
	_, err := svc.Txn(ctx, Txn{Success: []Op{{Type: OpPut, Key: "a", Value: []byte("x")}, {Type: OpPut, Key: "ev/c", Value: []byte("y")}}})
	if CodeOf(err) != CodeUnsupportedMode {
		t.Fatalf("txn across modes: %v", err)
	}
	if _, _, err := svc.Delete(ctx, "", DeleteOptions{Prefix: true}); CodeOf(err) != CodeUnsupportedMode {
		t.Fatalf("prefix delete across modes: %v", err)
	}
	if got := len(strong.applied) + len(eventual.applied); got != n {
		t.Fatalf("a refused request reached an engine (%d calls, want %d)", got, n)
	}
	if res, err := svc.List(ctx, "ev/", ListOptions{}); err != nil || len(res.Items) != 1 {
		t.Fatalf("list inside one keyspace: %v %v", res, err)
	}
	// A list across modes merges both engines' keys in order, page by page.
	for _, k := range []string{"e1", "ev/c", "ev/d", "f"} {
		if _, err := svc.Put(ctx, k, []byte("v"), PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	after := ""
	for page := 0; page < 10; page++ {
		res, err := svc.List(ctx, "", ListOptions{After: after, Limit: 2})
		if err != nil {
			t.Fatalf("list across modes: %v", err)
		}
		for _, r := range res.Items {
			keys = append(keys, r.Key)
			after = r.Key
		}
		if !res.More {
			break
		}
	}
	if want := "a e1 ev/b ev/c ev/d f"; strings.Join(keys, " ") != want {
		t.Fatalf("list across modes: %v, want %s", keys, want)
	}
}

func TestTxnBatchSplitsByEngine(t *testing.T) {
	svc, strong, eventual := newRouted(t)
	put := func(k string) Txn { return Txn{Success: []Op{{Type: OpPut, Key: k, Value: []byte("v")}}} }
	bad := Txn{Success: []Op{{Type: OpPut, Key: ""}}}
	res, errs, err := svc.TxnBatch(context.Background(), []Txn{put("a"), put("b"), bad, put("ev/x"), put("c")})
	if err != nil {
		t.Fatal(err)
	}
	if CodeOf(errs[2]) != CodeInvalidKey || res[2] != nil {
		t.Fatalf("invalid txn: %v %v", res[2], errs[2])
	}
	for _, i := range []int{0, 1, 3, 4} {
		if errs[i] != nil || res[i] == nil {
			t.Fatalf("txn %d: %v %v", i, res[i], errs[i])
		}
	}
	// In order: a and b together, then ev/x, then c.
	if len(strong.applied) != 2 || len(strong.applied[0]) != 2 || len(strong.applied[1]) != 1 || len(eventual.applied) != 1 {
		t.Fatalf("engine calls: strong %v, eventual %v", strong.applied, eventual.applied)
	}
}

func TestUnservedModeIsRefused(t *testing.T) {
	tbl := keyspace.NewTable()
	if err := tbl.Set([]keyspace.Policy{{Prefix: "ev/", Mode: keyspace.Eventual}}); err != nil {
		t.Fatal(err)
	}
	strong := newFakeEngine("strong")
	svc := NewService(Config{}, map[keyspace.Mode]Engine{keyspace.Strong: strong}, &fakeControl{table: tbl, auth: &AuthState{}})
	if _, err := svc.Put(context.Background(), "ev/a", []byte("1"), PutOptions{}); !errors.Is(err, ErrUnsupportedMode) {
		t.Fatalf("put into a keyspace no engine serves: %v", err)
	}
	if len(strong.applied) != 0 {
		t.Fatal("the strong engine got a write for an eventual keyspace")
	}
}

func TestCodes(t *testing.T) {
	for _, c := range codes {
		err := fmt.Errorf("wrapped: %w", c.err)
		if got := CodeOf(err); got != c.code {
			t.Errorf("CodeOf(%v) = %q, want %q", err, got, c.code)
		}
		if !errors.Is(c.code.Err(), c.err) {
			t.Errorf("%q.Err() = %v", c.code, c.code.Err())
		}
		// Across a process boundary: code and message rebuild the error.
		back := ErrorWithCode(CodeOf(err), fmt.Errorf("%w: detail", c.err).Error())
		if !errors.Is(back, c.err) || back.Error() != c.err.Error()+": detail" {
			t.Errorf("ErrorWithCode(%q) = %v", c.code, back)
		}
	}
	if CodeOf(nil) != CodeOK || CodeOK.Err() != nil || ErrorWithCode(CodeOK, "") != nil {
		t.Error("CodeOK is not nil")
	}
	if CodeOf(context.DeadlineExceeded) != CodeUnavailable || CodeOf(context.Canceled) != CodeUnavailable {
		t.Error("deadlines and cancellation are unavailable")
	}
	if CodeOf(errors.New("disk on fire")) != CodeInternal || !errors.Is(Code("from_a_newer_version").Err(), ErrInternal) {
		t.Error("unknown errors and codes are internal")
	}
	pe := &PreconditionError{Key: "k"}
	if CodeOf(pe) != CodePreconditionFailed {
		t.Errorf("PreconditionError code %q", CodeOf(pe))
	}
}
