package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"iter"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// fakeService is a Service whose methods are function fields. A method whose
// field is nil fails with errUnexpectedCall, which the API answers with 500.
// It has no data of its own: tests use it to see exactly what the handler
// passes to the service, and to inject answers (errors, nil results) that a
// real service does not give on demand. Tests of what the API answers about
// data run on a real service (engineHandler).
type fakeService struct {
	get                func(ctx context.Context, key string, o kv.ReadOptions) (*kv.Record, error)
	list               func(ctx context.Context, prefix string, o kv.ListOptions) (*kv.ListResult, error)
	put                func(ctx context.Context, key string, value []byte, o kv.PutOptions) (*kv.Record, error)
	patch              func(ctx context.Context, key string, patch []byte) (*kv.Record, error)
	txn                func(ctx context.Context, t kv.Txn) (*kv.TxnResult, error)
	ring               func(ctx context.Context, key string) (*kv.RingInfo, error)
	members            func(ctx context.Context) ([]kv.Member, error)
	addMember          func(ctx context.Context, m kv.MemberSpec) error
	removeMember       func(ctx context.Context, name string) error
	promoteMember      func(ctx context.Context, name string) error
	transferLeadership func(ctx context.Context, to string) error
	status             func(ctx context.Context) (*kv.Status, error)
	ready              func() error
	watch              func(ctx context.Context, prefix string, from int64) (iter.Seq2[[]kv.Event, error], error)
	// keyspaces is the policy table (nil: every key strong).
	keyspaces *keyspace.Table

	// calls names every method called, in order.
	calls []string
}

var errUnexpectedCall = errors.New("fake: unexpected call")

var _ Service = (*fakeService)(nil)

func (f *fakeService) called(name string) { f.calls = append(f.calls, name) }

func (f *fakeService) Watch(ctx context.Context, prefix string, from int64) (iter.Seq2[[]kv.Event, error], error) {
	f.called("Watch")
	if f.watch == nil {
		return nil, errUnexpectedCall
	}
	return f.watch(ctx, prefix, from)
}

func (f *fakeService) Get(ctx context.Context, key string, o kv.ReadOptions) (*kv.Record, error) {
	f.called("Get")
	if f.get == nil {
		return nil, errUnexpectedCall
	}
	return f.get(ctx, key, o)
}

func (f *fakeService) List(ctx context.Context, prefix string, o kv.ListOptions) (*kv.ListResult, error) {
	f.called("List")
	if f.list == nil {
		return nil, errUnexpectedCall
	}
	return f.list(ctx, prefix, o)
}

func (f *fakeService) Put(ctx context.Context, key string, value []byte, o kv.PutOptions) (*kv.Record, error) {
	f.called("Put")
	if f.put == nil {
		return nil, errUnexpectedCall
	}
	return f.put(ctx, key, value, o)
}

func (f *fakeService) Patch(ctx context.Context, key string, patch []byte) (*kv.Record, error) {
	f.called("Patch")
	if f.patch == nil {
		return nil, errUnexpectedCall
	}
	return f.patch(ctx, key, patch)
}

func (f *fakeService) Txn(ctx context.Context, t kv.Txn) (*kv.TxnResult, error) {
	f.called("Txn")
	if f.txn == nil {
		return nil, errUnexpectedCall
	}
	return f.txn(ctx, t)
}

func (f *fakeService) Ring(ctx context.Context, key string) (*kv.RingInfo, error) {
	f.called("Ring")
	if f.ring == nil {
		return nil, errUnexpectedCall
	}
	return f.ring(ctx, key)
}

// EnsureKeyspace succeeds without a call record: the Repose API asks on
// every request, and tests look at the calls that do the work.
func (f *fakeService) EnsureKeyspace(context.Context, keyspace.Policy) error { return nil }

// deleted is a transaction's answer to a delete of n keys at revision rev,
// as a fake's txn returns it.
func deleted(t kv.Txn, n, rev int64) *kv.TxnResult {
	return &kv.TxnResult{Succeeded: true, Revision: rev, Results: []kv.OpResult{{Type: t.Success[0].Type, Key: t.Success[0].Key, Deleted: n}}}
}

func (f *fakeService) Members(ctx context.Context) ([]kv.Member, error) {
	f.called("Members")
	if f.members == nil {
		return nil, errUnexpectedCall
	}
	return f.members(ctx)
}

func (f *fakeService) AddMember(ctx context.Context, m kv.MemberSpec) error {
	f.called("AddMember")
	if f.addMember == nil {
		return errUnexpectedCall
	}
	return f.addMember(ctx, m)
}

func (f *fakeService) RemoveMember(ctx context.Context, name string) error {
	f.called("RemoveMember")
	if f.removeMember == nil {
		return errUnexpectedCall
	}
	return f.removeMember(ctx, name)
}

func (f *fakeService) PromoteMember(ctx context.Context, name string) error {
	f.called("PromoteMember")
	if f.promoteMember == nil {
		return errUnexpectedCall
	}
	return f.promoteMember(ctx, name)
}

func (f *fakeService) TransferLeadership(ctx context.Context, to string) error {
	f.called("TransferLeadership")
	if f.transferLeadership == nil {
		return errUnexpectedCall
	}
	return f.transferLeadership(ctx, to)
}

func (f *fakeService) Status(ctx context.Context) (*kv.Status, error) {
	f.called("Status")
	if f.status == nil {
		return nil, errUnexpectedCall
	}
	return f.status(ctx)
}

func (f *fakeService) Ready() error {
	f.called("Ready")
	if f.ready == nil {
		return errUnexpectedCall
	}
	return f.ready()
}

// Keyspaces is not a call the handler makes of the service, only a lookup
// that labels reads: it is not recorded.
func (f *fakeService) Keyspaces() *keyspace.Table {
	if f.keyspaces == nil {
		return keyspace.NewTable()
	}
	return f.keyspaces
}

// The keyspace methods are tested on the real engine (keyspace_test.go).

func (f *fakeService) ListKeyspaces(context.Context) ([]keyspace.Policy, error) {
	f.called("ListKeyspaces")
	return nil, errUnexpectedCall
}

func (f *fakeService) Keyspace(context.Context, string) (*keyspace.Policy, error) {
	f.called("Keyspace")
	return nil, errUnexpectedCall
}

func (f *fakeService) PutKeyspace(context.Context, keyspace.Policy) (*kv.KeyspaceChange, error) {
	f.called("PutKeyspace")
	return nil, errUnexpectedCall
}

func (f *fakeService) DeleteKeyspace(context.Context, string) (*kv.KeyspaceChange, error) {
	f.called("DeleteKeyspace")
	return nil, errUnexpectedCall
}

// testLogger routes the handler's logs to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// mustHandler returns the API over f with a small value limit.
func mustHandler(t testing.TB, f *fakeService) http.Handler {
	t.Helper()
	return New(f, Options{MaxValueBytes: testMaxValue, Logger: testLogger(t)})
}

// request is one test request; hdr holds header name, value pairs.
type request struct {
	method, target, body string
	hdr                  []string
}

func mustServe(t testing.TB, h http.Handler, rq request) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(rq.method, rq.target, strings.NewReader(rq.body))
	for i := 0; i+1 < len(rq.hdr); i += 2 {
		r.Header.Set(rq.hdr[i], rq.hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// mustEqualJSON fails unless got and want are the same JSON value.
func mustEqualJSON(t testing.TB, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("answer is not JSON: %v: %q", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation %q: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("JSON mismatch\n got: %s\nwant: %s", bytes.TrimSpace(got), want)
	}
}

// mustError checks an error answer's status and code.
func mustError(t testing.TB, w *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type %q", ct)
	}
	var b struct {
		Error struct {
			Code     string `json:"code"`
			Message  string `json:"message"`
			Revision *int64 `json:"revision"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		t.Fatalf("error body %q: %v", w.Body, err)
	}
	if b.Error.Code != code || b.Error.Message == "" {
		t.Fatalf("error code %q (message %q), want %q", b.Error.Code, b.Error.Message, code)
	}
	if b.Error.Revision != nil && code != "precondition_failed" {
		t.Fatalf("error revision %d on code %q", *b.Error.Revision, code)
	}
}

func mustNotCall(t testing.TB, f *fakeService) {
	t.Helper()
	if len(f.calls) != 0 {
		t.Fatalf("service called: %v", f.calls)
	}
}

func ptr[T any](v T) *T { return &v }

func jsonString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}
