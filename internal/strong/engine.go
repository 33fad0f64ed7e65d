package strong

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/cairnkv/cairn/internal/peer"
	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/internal/store"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures the strong engine.
type Config struct {
	// Name is this node's member name.
	Name string
	// Dir is the data directory: the state database is Dir/state; Raft
	// keeps its log and snapshots beside it (Raft.Dir).
	Dir string
	// Raft configures the Raft member; the engine fills in its state
	// database and state machine. The engine registers its own service
	// ("strong") on Raft.RPC, the node's shared internal RPC endpoint;
	// when that is nil it opens one on Raft.Mux and hands it to Raft too.
	Raft raftnode.Config
	// RequestTimeout bounds each request that has no deadline of its own.
	RequestTimeout time.Duration
	// ExpiryInterval is how often the leader looks for expired keys.
	ExpiryInterval time.Duration
	// UnsafeFollowerReads serves linearizable reads on followers without the
	// read index. It is wrong on purpose and only reachable in test builds, to
	// show that the linearizability checker catches stale reads.
	UnsafeFollowerReads bool
	// ReadMode is how linearizable reads confirm the leader unless the
	// request chooses (kv.ReadModeDefault: the read index).
	ReadMode kv.ReadMode
	// WatchHistory is how many revisions of events the watch history keeps
	// (0: DefaultWatchHistory); a watch from an older revision is refused
	// with kv.CompactedError.
	WatchHistory int64
	// WatchBuffer is how many commands' events a watcher may fall behind
	// by before it is dropped (0: watch.DefaultBuffer).
	WatchBuffer int
	// MaxValueBytes is the node's max-value-bytes (0: 1 MiB). One command,
	// a Raft entry, carries at most MaxEntryBytes of it: a transaction over
	// that is refused, and a batch of transactions over it is proposed as
	// several entries.
	MaxValueBytes int64
	// StoreFailed, when set, is told if the state database fails
	// (store.Options.OnFail: its disk keeps failing); it must not block.
	// Raft.StoreFailed is the log database's.
	StoreFailed func(error)
	Logger      *slog.Logger
}

// consensus is what the engine uses of its Raft member, *raftnode.Node.
type consensus interface {
	Propose(ctx context.Context, data []byte) ([]byte, error)
	ReadIndex(ctx context.Context) error
	LeaseReadIndex(ctx context.Context) error
	WaitApplied(ctx context.Context, idx uint64) error
	IsLeader() bool
	AppliedIndex() uint64
	CaughtUp() bool
	IsStale() bool
	HadState() bool
	Status() raftnode.Status
	Servers() ([]raftnode.Server, error)
	AddMember(ctx context.Context, id, addr string, voter bool) error
	RemoveMember(ctx context.Context, id string) error
	PromoteMember(ctx context.Context, id string) error
	TransferLeadership(ctx context.Context, id string) error
	Snapshot() error
	Collector() prometheus.Collector
	Removed() <-chan struct{}
	RemovedReason() string
	Close() error
}

var _ consensus = (*raftnode.Node)(nil)

// MaxEntryBytes is the largest command the engine proposes for values of up
// to maxValue bytes: a transaction of two such values (an HTTP transaction
// body holds at most 2 × max-value-bytes) and 1 MiB of keys and options.
// The peer RPC frame limit is derived from it (server), so a forwarded
// proposal always fits.
func MaxEntryBytes(maxValue int64) int64 {
	if maxValue <= 0 {
		maxValue = 1 << 20
	}
	return 2*maxValue + 1<<20
}

// Engine is the strong engine on one node: a Raft member whose state
// machine keeps records, the control plane and the TTL index in the state
// database. It implements kv.Engine and kv.Control.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	db      *store.DB
	machine *Machine
	node    consensus
	rpc     *peer.RPC     // the node's internal RPC endpoint (Raft.RPC, or the engine's own)
	svc     *peer.Service // the engine's methods on rpc
	ownRPC  bool          // rpc was opened by the engine (Raft.RPC was nil)
	opened  time.Time

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

var (
	_ kv.Engine  = (*Engine)(nil)
	_ kv.Control = (*Engine)(nil)
	_ kv.Watcher = (*Engine)(nil)
)

// Open opens the state database, starts the Raft member (it rejoins with
// the state on disk, or bootstraps as cfg.Raft says) and the TTL expiry
// loop, which is active only while this node leads.
func Open(cfg Config) (_ *Engine, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.ExpiryInterval <= 0 {
		cfg.ExpiryInterval = 200 * time.Millisecond
	}
	if cfg.MaxValueBytes <= 0 {
		cfg.MaxValueBytes = 1 << 20
	}
	if cfg.Raft.MaxValueBytes <= 0 {
		cfg.Raft.MaxValueBytes = cfg.MaxValueBytes
	}
	e := &Engine{cfg: cfg, log: cfg.Logger.With("subsystem", "strong"), stop: make(chan struct{}), opened: time.Now()}
	defer func() {
		if err != nil {
			_ = e.Close()
		}
	}()
	// The state database has no WAL: the Raft log is the durable copy of
	// every write, and the applied index in each batch tells a restart
	// where to replay from (raftnode/DESIGN.md, "Storage").
	if e.db, err = store.Open(filepath.Join(cfg.Dir, "state"), store.Options{Logger: cfg.Logger, DisableWAL: true, OnFail: cfg.StoreFailed}); err != nil {
		return nil, err
	}
	if e.machine, err = NewMachine(e.db); err != nil {
		return nil, err
	}
	if cfg.WatchHistory > 0 {
		e.machine.hist.limit = cfg.WatchHistory
	}
	rc := cfg.Raft
	rc.StateDB, rc.StateMachine = e.db, e.machine
	if e.rpc = rc.RPC; e.rpc == nil {
		if e.rpc, err = peer.NewRPC(rc.Mux, rc.Dialer, peer.RPCOptions{Logger: cfg.Logger.With("subsystem", "rpc")}); err != nil {
			return nil, err
		}
		e.ownRPC, rc.RPC = true, e.rpc
	}
	if e.svc, err = e.registerRPC(); err != nil {
		return nil, err
	}
	if rc.RequestTimeout <= 0 {
		rc.RequestTimeout = cfg.RequestTimeout
	}
	if rc.Logger == nil {
		rc.Logger = cfg.Logger
	}
	if e.node, err = raftnode.Start(rc); err != nil {
		e.node = nil
		return nil, err
	}
	e.wg.Add(1)
	go e.expiryLoop()
	return e, nil
}

// Close stops the expiry loop and the engine's RPC service, then Raft
// (which hands leadership away first), then flushes and closes the state
// database.
func (e *Engine) Close() error {
	var err error
	e.once.Do(func() {
		close(e.stop)
		e.wg.Wait()
		if e.machine != nil {
			e.machine.hist.hub.Close(errClosed)
		}
		if e.svc != nil {
			e.svc.Close()
		}
		if e.node != nil {
			err = e.node.Close()
		}
		if e.ownRPC {
			_ = e.rpc.Close()
		}
		if e.db != nil {
			// No flush here: without a WAL, what the memtable holds is
			// lost and replayed from the Raft log at the next start, as
			// after a crash. A flush that cannot write (a full disk, a
			// removed directory) is retried by pebble forever and would
			// hang shutdown (and pebble's Close waits for it too).
			if cerr := e.db.Close(); err == nil {
				err = cerr
			}
		}
	})
	return err
}

// Raft is the engine's hashicorp/raft member; nil under the experimental
// etcd raft member (RaftImpl "etcd").
func (e *Engine) Raft() *raftnode.Node {
	n, _ := e.node.(*raftnode.Node)
	return n
}

// AppliedIndex is the index of the last Raft entry applied to the state.
func (e *Engine) AppliedIndex() uint64 { return e.node.AppliedIndex() }

// Servers is the Raft configuration this node knows.
func (e *Engine) Servers() ([]raftnode.Server, error) { return e.node.Servers() }

// Removed closes when this node learns it was removed from the cluster.
func (e *Engine) Removed() <-chan struct{} { return e.node.Removed() }

// RemovedReason says how the node learned it was removed.
func (e *Engine) RemovedReason() string { return e.node.RemovedReason() }

// HadState reports whether the node restarted over state it had on disk.
func (e *Engine) HadState() bool { return e.node.HadState() }

// ctx bounds a request by the configured request timeout (and the caller's deadline).
func (e *Engine) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.cfg.RequestTimeout)
}

// bounded is ctx for a call into the Raft member, which bounds a call
// without a deadline by the same request timeout, from the deadline alone
// and with no timer on the leader (raftnode.Node.Propose): only a deadline
// later than the request timeout needs a context of its own (a timer
// context made and cancelled per request was 5 % of a loaded leader's CPU).
func (e *Engine) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) > e.cfg.RequestTimeout {
		return e.ctx(ctx)
	}
	return ctx, func() {}
}

// propose replicates c and decodes the machine's result.
func (e *Engine) propose(ctx context.Context, c command) (*result, error) {
	out, err := e.replicate(ctx, c)
	if err != nil {
		return nil, err
	}
	return decodeResult(out)
}

// replicate commits c through Raft and returns the machine's encoded result.
func (e *Engine) replicate(ctx context.Context, c command) ([]byte, error) {
	data, err := encodeCommand(c)
	if err != nil {
		return nil, fmt.Errorf("strong: encode command: %w", err)
	}
	ctx, cancel := e.bounded(ctx)
	defer cancel()
	out, err := e.node.Propose(ctx, data)
	return out, mapErr(err)
}

// barrier waits, for a linearizable read, until this node has applied every
// entry committed before the call (the read index).
func (e *Engine) barrier(ctx context.Context, o kv.ReadOptions) error {
	if o.Serializable || (e.cfg.UnsafeFollowerReads && !e.node.IsLeader()) {
		return nil
	}
	ctx, cancel := e.bounded(ctx)
	defer cancel()
	mode := o.ReadMode
	if mode == kv.ReadModeDefault {
		mode = e.cfg.ReadMode
	}
	if mode == kv.ReadModeLease {
		return mapErr(e.node.LeaseReadIndex(ctx))
	}
	return mapErr(e.node.ReadIndex(ctx))
}

// Barrier implements kv.Control.
func (e *Engine) Barrier(ctx context.Context) error { return e.barrier(ctx, kv.ReadOptions{}) }

// Get implements kv.Engine.
func (e *Engine) Get(ctx context.Context, key string, o kv.ReadOptions) (*kv.Record, error) {
	if err := e.barrier(ctx, o); err != nil {
		return nil, err
	}
	r, err := e.record(key)
	if err != nil || r == nil || expired(r, time.Now()) {
		return nil, err
	}
	return r, nil
}

// record returns key's committed record, nil when absent: from the
// machine's cache when it knows the key, else from the database.
func (e *Engine) record(key string) (*kv.Record, error) {
	if r, ok := e.machine.Cached(key); ok {
		return r, nil
	}
	raw, err := e.db.Get(dataKey(key))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeRecord(key, raw)
}

// expired reports a key whose TTL has passed but that the leader's expiry
// sweep has not removed yet (at most a few hundred milliseconds); reads do not
// show it, as Redis does not.
func expired(r *kv.Record, now time.Time) bool {
	return r.Expires != 0 && r.Expires <= now.UnixNano()
}

// List implements kv.Engine: one page of the records under prefix, read
// from one consistent snapshot of the state database.
func (e *Engine) List(ctx context.Context, prefix string, o kv.ListOptions, visible func(key string) bool) (*kv.ListResult, error) {
	if err := e.barrier(ctx, o.ReadOptions); err != nil {
		return nil, err
	}
	snap := e.db.NewSnapshot()
	defer snap.Close()
	rev, err := readRevision(snap)
	if err != nil {
		return nil, err
	}
	lo := dataKey(prefix)
	hi := store.PrefixEnd(lo)
	if o.After != "" && o.After >= prefix {
		lo = append(dataKey(o.After), 0)
	}
	res := &kv.ListResult{Revision: rev, Items: []*kv.Record{}}
	now := time.Now()
	var derr error
	err = snap.Scan(lo, hi, func(k, v []byte) bool {
		if o.Limit > 0 && len(res.Items) == o.Limit {
			res.More = true
			return false
		}
		if !visible(string(k[1:])) {
			return true
		}
		r, err := decodeRecord(string(k[1:]), v)
		if err != nil {
			derr = err
			return false
		}
		if expired(r, now) {
			return true
		}
		if o.KeysOnly {
			r.Value = nil
		} else {
			r.Value = append([]byte(nil), r.Value...)
		}
		res.Items = append(res.Items, r)
		return true
	})
	if err == nil {
		err = derr
	}
	return res, err
}

// Apply implements kv.Engine: the transactions become one log entry (a txn
// command for one, a batch command for more), committed and applied
// together.
func (e *Engine) Apply(ctx context.Context, txns []kv.Txn, authRev uint64) ([]*kv.TxnResult, []error, error) {
	results := make([]*kv.TxnResult, len(txns))
	errs := make([]error, len(txns))
	limit := int(MaxEntryBytes(e.cfg.MaxValueBytes))
	total := 0
	var fit []int // when some transaction is too large: the others
	for i := range txns {
		n := txnBytes(&txns[i])
		if n > limit {
			errs[i] = fmt.Errorf("%w: a transaction of %d bytes; one transaction carries at most %d (2 × max-value-bytes + 1 MiB)",
				kv.ErrValueTooLarge, n, limit)
			if fit == nil {
				fit = make([]int, 0, len(txns))
				for j := range i {
					fit = append(fit, j)
				}
			}
			continue
		}
		if fit != nil {
			fit = append(fit, i)
		}
		total += n
	}
	if fit != nil {
		if len(txns) == 1 {
			return nil, nil, errs[0]
		}
		rest := make([]kv.Txn, len(fit))
		for k, i := range fit {
			rest[k] = txns[i]
		}
		if len(rest) > 0 {
			res, es, err := e.Apply(ctx, rest, authRev)
			if err != nil {
				return nil, nil, err
			}
			for k, i := range fit {
				results[i], errs[i] = res[k], es[k]
			}
		}
		return results, errs, nil
	}
	if len(txns) > 1 && total > limit {
		// Too much for one entry (a pipeline of large writes): several
		// entries, proposed one after another so they commit in order.
		for start := 0; start < len(txns); {
			end, n := start, 0
			for end < len(txns) && (end == start || n+txnBytes(&txns[end]) <= limit) {
				n += txnBytes(&txns[end])
				end++
			}
			res, es, err := e.Apply(ctx, txns[start:end], authRev)
			if err != nil {
				return nil, nil, err
			}
			copy(results[start:], res)
			copy(errs[start:], es)
			start = end
		}
		return results, errs, nil
	}
	if len(txns) == 1 {
		out, err := e.replicate(ctx, command{Type: cmdTxn, Txn: &txns[0], AuthChecked: true, AuthRev: authRev})
		if err != nil {
			return nil, nil, err
		}
		res, err := decodeResult(out)
		switch {
		case errors.Is(err, kv.ErrAuthChanged): // the command as a whole was refused
			return nil, nil, err
		case err != nil:
			errs[0] = err // the transaction's own error (not an integer, not JSON, …)
		case res.Txn == nil:
			return nil, nil, errors.New("strong: empty txn result")
		default:
			results[0] = res.Txn
		}
		return results, errs, nil
	}
	res, err := e.propose(ctx, command{Type: cmdBatch, Batch: txns, AuthChecked: true, AuthRev: authRev})
	if err != nil {
		return nil, nil, err
	}
	if len(res.Batch) != len(txns) {
		return nil, nil, errors.New("strong: batch result has the wrong length")
	}
	for i, b := range res.Batch {
		r, err := decodeResult(b)
		if err != nil {
			errs[i] = err
			continue
		}
		results[i] = r.Txn
	}
	return results, errs, nil
}

// readyLag is how far (in entries) the applied index may trail the commit
// index for the node to count as caught up.
const readyLag = 1000

// Ready returns nil when this node knows a leader, is in contact with it,
// has applied the log nearly to the commit index and, after a restart, at
// least as far as it had before (see raftnode.Node.CaughtUp).
func (e *Engine) Ready() error {
	st := e.node.Status()
	if st.LeaderID == "" {
		return kv.ErrNoLeader
	}
	if e.node.IsStale() {
		return fmt.Errorf("%w: no contact with the leader for %s", kv.ErrNoLeader, st.LastContact)
	}
	if !e.node.CaughtUp() {
		return fmt.Errorf("%w: replaying the log after a restart (applied %d, log %d)", kv.ErrUnavailable, st.AppliedIndex, st.LastIndex)
	}
	if st.CommitIndex > st.AppliedIndex+readyLag {
		return fmt.Errorf("%w: catching up (applied %d of %d)", kv.ErrUnavailable, st.AppliedIndex, st.CommitIndex)
	}
	return nil
}

// IsStale reports whether local (serializable) reads may be out of date: no
// contact with a leader, or a restarted node still replaying its log (its
// state may be older than what it served before it stopped).
func (e *Engine) IsStale() bool { return e.node.IsStale() || !e.node.CaughtUp() }

// Replayed implements kv.Control: true once the node has replayed its log
// after a restart, or after replayGrace without it (a node restarted while
// cut off from the leader cannot learn how far to replay; it then routes by
// the policies it has, so eventual keyspaces keep working on it, and the
// machine refuses at apply a strong write to a key it misrouted).
func (e *Engine) Replayed() bool { return e.node.CaughtUp() || time.Since(e.opened) > replayGrace }

const replayGrace = 5 * time.Second

// AuthState implements kv.Control.
func (e *Engine) AuthState() *kv.AuthState { return e.machine.AuthState() }

// ChangeAuth implements kv.Control.
func (e *Engine) ChangeAuth(ctx context.Context, c kv.AuthChange) error {
	_, err := e.propose(ctx, command{Type: cmdAuth, Auth: &c})
	return err
}

// Keyspaces implements kv.Control.
func (e *Engine) Keyspaces() *keyspace.Table { return e.machine.Keyspaces() }

// Status implements kv.Control.
func (e *Engine) Status(context.Context) (*kv.Status, error) {
	st := e.node.Status()
	servers, _ := e.node.Servers()
	return &kv.Status{
		Name:          e.cfg.Name,
		State:         st.State,
		Leader:        st.LeaderID,
		LeaderAddr:    st.LeaderAddr,
		Term:          st.Term,
		CommitIndex:   st.CommitIndex,
		AppliedIndex:  st.AppliedIndex,
		LastIndex:     st.LastIndex,
		Revision:      e.machine.Revision(),
		ClusterID:     e.machine.ClusterID(),
		Members:       len(servers),
		LastContactMs: st.LastContact.Milliseconds(),
	}, nil
}

// Snapshot takes a Raft snapshot on this node now and compacts its log.
func (e *Engine) Snapshot() error { return mapErr(e.node.Snapshot()) }

// Digest summarizes the replicated records: the revision and a hash of every
// key, value and metadata byte, read from one consistent snapshot. Replicas
// that applied the same log prefix have equal digests.
func (e *Engine) Digest() (revision int64, hash uint64, err error) {
	snap := e.db.NewSnapshot()
	defer snap.Close()
	if revision, err = readRevision(snap); err != nil {
		return 0, 0, err
	}
	h := fnv.New64a()
	err = snap.Scan([]byte{prefixData}, []byte{prefixMember}, func(k, v []byte) bool {
		h.Write(k)
		h.Write([]byte{0})
		h.Write(v)
		return true
	})
	return revision, h.Sum64(), err
}
