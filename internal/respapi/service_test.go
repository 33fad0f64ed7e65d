package respapi

import (
	"context"
	"iter"
	"sync"
	"testing"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

// The tests run the front end on a real single-node service (kvtest): real
// Raft, the real state machine, real pebble. Where a test must see how the
// front end calls the service, or needs an answer a healthy node does not
// give on demand, it wraps the service in a spy.

// newService starts a real single-node service for the test.
func newService(t testing.TB, opts ...kvtest.Option) *kv.Service {
	t.Helper()
	return kvtest.NewService(t, opts...)
}

// withPasswords returns the options of a service whose config file has
// these users (name, password pairs), each allowed everything, and nothing
// for anonymous clients: AUTH is required.
func withPasswords(t testing.TB, namePassword ...string) []kvtest.Option {
	t.Helper()
	var users []auth.User
	for i := 0; i+1 < len(namePassword); i += 2 {
		users = append(users, kvtest.User(t, namePassword[i], namePassword[i+1]))
	}
	return []kvtest.Option{
		kvtest.Users(users...),
		kvtest.Rules(auth.Rule{Identity: ".+", Actions: []string{"read", "write", "admin"}}),
	}
}

// spy is a Service that records the calls the front end makes and passes
// them on to a real service. A function field that is set answers in the
// service's place; it has no semantics of its own, only the answer a test
// injects.
type spy struct {
	Service

	mu             sync.Mutex
	getFn          func(ctx context.Context, key string, o kv.ReadOptions) (*kv.Record, error)
	txnBatchFn     func(ctx context.Context, txns []kv.Txn) ([]*kv.TxnResult, []error, error)
	statusFn       func(ctx context.Context) (*kv.Status, error)
	addMemberFn    func(ctx context.Context, m kv.MemberSpec) error
	removeMemberFn func(ctx context.Context, name string) error
	watchFn        func(ctx context.Context, prefix string, fromRevision int64) (iter.Seq2[[]kv.Event, error], error)

	calls   []string         // "get", "list", "txn", "batch" in call order
	batches []int            // the size of every TxnBatch call
	txns    int              // Txn calls
	reads   []kv.ReadOptions // the options of every Get and List
	added   []kv.MemberSpec  // AddMember calls
	removed []string         // RemoveMember calls
}

func newSpy(svc Service) *spy { return &spy{Service: svc} }

func (s *spy) Get(ctx context.Context, key string, o kv.ReadOptions) (*kv.Record, error) {
	s.mu.Lock()
	s.calls, s.reads = append(s.calls, "get"), append(s.reads, o)
	fn := s.getFn
	s.mu.Unlock()
	if fn != nil {
		return fn(ctx, key, o)
	}
	return s.Service.Get(ctx, key, o)
}

func (s *spy) List(ctx context.Context, prefix string, o kv.ListOptions) (*kv.ListResult, error) {
	s.mu.Lock()
	s.calls, s.reads = append(s.calls, "list"), append(s.reads, o.ReadOptions)
	s.mu.Unlock()
	return s.Service.List(ctx, prefix, o)
}

func (s *spy) Txn(ctx context.Context, t kv.Txn) (*kv.TxnResult, error) {
	s.mu.Lock()
	s.calls = append(s.calls, "txn")
	s.txns++
	s.mu.Unlock()
	return s.Service.Txn(ctx, t)
}

func (s *spy) TxnBatch(ctx context.Context, txns []kv.Txn) ([]*kv.TxnResult, []error, error) {
	s.mu.Lock()
	s.calls, s.batches = append(s.calls, "batch"), append(s.batches, len(txns))
	fn := s.txnBatchFn
	s.mu.Unlock()
	if fn != nil {
		return fn(ctx, txns)
	}
	return s.Service.TxnBatch(ctx, txns)
}

func (s *spy) Status(ctx context.Context) (*kv.Status, error) {
	s.mu.Lock()
	fn := s.statusFn
	s.mu.Unlock()
	if fn != nil {
		return fn(ctx)
	}
	return s.Service.Status(ctx)
}

func (s *spy) AddMember(ctx context.Context, m kv.MemberSpec) error {
	s.mu.Lock()
	s.added = append(s.added, m)
	fn := s.addMemberFn
	s.mu.Unlock()
	if fn != nil {
		return fn(ctx, m)
	}
	return s.Service.AddMember(ctx, m)
}

func (s *spy) RemoveMember(ctx context.Context, name string) error {
	s.mu.Lock()
	s.removed = append(s.removed, name)
	fn := s.removeMemberFn
	s.mu.Unlock()
	if fn != nil {
		return fn(ctx, name)
	}
	return s.Service.RemoveMember(ctx, name)
}

func (s *spy) Watch(ctx context.Context, prefix string, fromRevision int64) (iter.Seq2[[]kv.Event, error], error) {
	s.mu.Lock()
	fn := s.watchFn
	s.mu.Unlock()
	if fn != nil {
		return fn(ctx, prefix, fromRevision)
	}
	return s.Service.Watch(ctx, prefix, fromRevision)
}

// set changes the spy's function fields while servers may be calling it.
func (s *spy) set(change func(s *spy)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	change(s)
}

// stats returns copies of the recorded calls.
func (s *spy) stats() (batches []int, txns int, calls []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.batches...), s.txns, append([]string(nil), s.calls...)
}

// readOptions returns a copy of the recorded read options.
func (s *spy) readOptions() []kv.ReadOptions {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]kv.ReadOptions(nil), s.reads...)
}

func (s *spy) resetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches, s.txns, s.calls, s.reads = nil, 0, nil, nil
}
