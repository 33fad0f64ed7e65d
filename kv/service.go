// Package kv is the service every front end calls: get, put, delete, list,
// transactions and JSON merge-patch with revisions, TTLs and compare-and-swap,
// plus cluster administration. It checks input, routes each key by its
// keyspace policy, and turns requests into commands for the strong engine
// (a Raft group whose state machine is Machine).
//
// Writes are proposed through Raft and acknowledged once committed by a
// quorum. Reads are linearizable unless ReadOptions.Serializable is set: the
// node obtains a read index from the leader (a leadership confirmation shared
// by every read waiting at the time) and waits until it has applied that far,
// then reads its local pebble state.
package kv

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/internal/store"
	"github.com/cairnkv/cairn/keyspace"
)

// Config configures a Service.
type Config struct {
	// Name is this node's member name.
	Name          string
	MaxValueBytes int64
	// RequestTimeout bounds each request that has no deadline of its own.
	RequestTimeout time.Duration
	// ExpiryInterval is how often the leader looks for expired keys.
	ExpiryInterval time.Duration
	Logger         *slog.Logger
	// UnsafeFollowerReads serves linearizable reads on followers without the
	// read index. It is wrong on purpose and only reachable in test builds, to
	// show that the linearizability checker catches stale reads.
	UnsafeFollowerReads bool
	// AuthUsers and AuthRules are the config file's users and ACL rules,
	// evaluated before the replicated ones (see auth.go).
	AuthUsers []auth.User
	AuthRules []auth.Rule
}

// Service implements the cairn API on one node.
type Service struct {
	cfg       Config
	log       *slog.Logger
	db        *store.DB
	machine   *Machine
	node      *raftnode.Node
	keyspaces *keyspace.Table
	passwords *auth.PasswordCache
	authCache atomic.Pointer[authView]

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// NewService returns a service over a started node and its machine, and starts
// the TTL expiry loop (active only while this node leads).
func NewService(cfg Config, db *store.DB, m *Machine, node *raftnode.Node) *Service {
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
	s := &Service{cfg: cfg, log: cfg.Logger.With("subsystem", "kv"), db: db, machine: m, node: node,
		keyspaces: keyspace.NewTable(), passwords: auth.NewPasswordCache(), stop: make(chan struct{})}
	s.wg.Add(1)
	go s.expiryLoop()
	return s
}

// Close stops background work.
func (s *Service) Close() {
	s.once.Do(func() { close(s.stop) })
	s.wg.Wait()
}

// Keyspaces returns the policy table.
func (s *Service) Keyspaces() *keyspace.Table { return s.keyspaces }

// ctx bounds a request by the configured request timeout (and the caller's deadline).
func (s *Service) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.RequestTimeout)
}

// route checks the key and returns an error unless its keyspace is served by
// the strong engine (the only engine so far).
func (s *Service) route(key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if p := s.keyspaces.Lookup(key); p.Mode != keyspace.Strong {
		return fmt.Errorf("%w: %q is in keyspace %q (%s)", ErrUnsupportedMode, key, p.Prefix, p.Mode)
	}
	return nil
}

func (s *Service) checkValue(key string, v []byte) error {
	limit := s.cfg.MaxValueBytes
	if p := s.keyspaces.Lookup(key); p.MaxValueBytes > 0 && p.MaxValueBytes < limit {
		limit = p.MaxValueBytes
	}
	if int64(len(v)) > limit {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrValueTooLarge, len(v), limit)
	}
	return nil
}

// mapErr translates engine errors into the service's sentinels.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raftnode.ErrNoLeader), errors.Is(err, raftnode.ErrNotLeader):
		return fmt.Errorf("%w: %w", ErrNoLeader, err)
	case errors.Is(err, raftnode.ErrUnknownMember):
		return fmt.Errorf("%w: %w", ErrMemberNotFound, err)
	case errors.Is(err, raftnode.ErrMemberExists):
		return fmt.Errorf("%w: %w", ErrMemberExists, err)
	case errors.Is(err, raftnode.ErrPeerUntrusted):
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	case errors.Is(err, raftnode.ErrTimeout), errors.Is(err, raftnode.ErrLeadershipLost),
		errors.Is(err, raftnode.ErrShutdown), errors.Is(err, context.DeadlineExceeded),
		// hashicorp/raft reports a leadership transfer that ran out of time
		// with an unexported error: the cluster was busy, try again.
		strings.Contains(err.Error(), "leadership transfer timeout"):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// propose replicates c and decodes the machine's result.
func (s *Service) propose(ctx context.Context, c command) (*result, error) {
	data, err := encodeCommand(c)
	if err != nil {
		return nil, fmt.Errorf("kv: encode command: %w", err)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	out, err := s.node.Propose(ctx, data)
	if err != nil {
		return nil, mapErr(err)
	}
	return decodeResult(out)
}

func (s *Service) barrier(ctx context.Context, o ReadOptions) error {
	if o.Serializable || (s.cfg.UnsafeFollowerReads && !s.node.IsLeader()) {
		return nil
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return mapErr(s.node.ReadIndex(ctx))
}

// Get returns the record at key, or ErrKeyNotFound.
func (s *Service) Get(ctx context.Context, key string, o ReadOptions) (*Record, error) {
	if err := s.route(key); err != nil {
		return nil, err
	}
	if err := s.barrier(ctx, o); err != nil {
		return nil, err
	}
	// After the barrier: a linearizable read sees every change of users and
	// rules committed before it started.
	if err := s.allow(ctx, auth.Read, key); err != nil {
		return nil, err
	}
	r, err := s.record(key)
	if err != nil {
		return nil, err
	}
	if r == nil || expired(r, time.Now()) {
		return nil, fmt.Errorf("%w: %q", ErrKeyNotFound, key)
	}
	return r, nil
}

// record returns key's committed record, nil when absent: from the
// machine's cache when it knows the key, else from the database.
func (s *Service) record(key string) (*Record, error) {
	if r, ok := s.machine.Cached(key); ok {
		return r, nil
	}
	raw, err := s.db.Get(dataKey(key))
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
func expired(r *Record, now time.Time) bool {
	return r.Expires != 0 && r.Expires <= now.UnixNano()
}

// List returns the keys under prefix in order, one page at a time.
func (s *Service) List(ctx context.Context, prefix string, o ListOptions) (*ListResult, error) {
	if len(prefix) > MaxKeyBytes {
		return nil, fmt.Errorf("%w: prefix longer than %d bytes", ErrInvalidKey, MaxKeyBytes)
	}
	if o.Limit < 0 {
		return nil, fmt.Errorf("%w: negative limit", ErrInvalidArgument)
	}
	if err := s.barrier(ctx, o.ReadOptions); err != nil {
		return nil, err
	}
	snap := s.db.NewSnapshot()
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
	res := &ListResult{Revision: rev, Items: []*Record{}}
	now := time.Now()
	// Only keys the caller may read are listed, wherever the range starts.
	av := s.authView()
	pol := av.policy
	id, err := av.caller(ctx)
	if err != nil {
		return nil, err
	}
	var derr error
	err = snap.Scan(lo, hi, func(k, v []byte) bool {
		if o.Limit > 0 && len(res.Items) == o.Limit {
			res.More = true
			return false
		}
		if !pol.Allow(id, auth.Read, string(k[1:])) {
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

// Put writes value at key.
func (s *Service) Put(ctx context.Context, key string, value []byte, o PutOptions) (*Record, error) {
	if err := s.route(key); err != nil {
		return nil, err
	}
	if err := s.checkValue(key, value); err != nil {
		return nil, err
	}
	if o.TTL < 0 {
		return nil, fmt.Errorf("%w: negative TTL", ErrInvalidArgument)
	}
	if o.TTL == 0 {
		o.TTL = s.keyspaces.Lookup(key).DefaultTTL
	}
	t := Txn{Success: []Op{{Type: OpPut, Key: key, Value: value, TTL: o.TTL}}}
	if o.IfModRevision != nil {
		t.Compare = append(t.Compare, Compare{Key: key, Target: TargetModRevision, Op: "=", Number: *o.IfModRevision})
	}
	if o.IfAbsent {
		t.Compare = append(t.Compare, Compare{Key: key, Target: TargetExists, Op: "=", Exists: false})
	}
	if len(t.Compare) > 0 {
		t.Failure = []Op{{Type: OpGet, Key: key}}
	}
	res, err := s.txn(ctx, &t)
	if err != nil {
		return nil, err
	}
	if !res.Succeeded {
		return nil, &PreconditionError{Key: key, Current: res.Results[0].Record}
	}
	r := res.Results[0].Record
	r.Value = value
	return r, nil
}

// Delete removes key, or every key under it with o.Prefix. It returns how many
// keys were removed and the revision after the delete.
func (s *Service) Delete(ctx context.Context, key string, o DeleteOptions) (deleted, revision int64, err error) {
	if o.Prefix {
		if len(key) > MaxKeyBytes {
			return 0, 0, fmt.Errorf("%w: prefix longer than %d bytes", ErrInvalidKey, MaxKeyBytes)
		}
		if o.IfModRevision != nil {
			return 0, 0, fmt.Errorf("%w: a revision condition needs a single key", ErrInvalidArgument)
		}
	} else if err := s.route(key); err != nil {
		return 0, 0, err
	}
	op := OpDelete
	if o.Prefix {
		op = OpDeletePrefix
	}
	t := Txn{Success: []Op{{Type: op, Key: key}}}
	if o.IfModRevision != nil {
		t.Compare = []Compare{{Key: key, Target: TargetModRevision, Op: "=", Number: *o.IfModRevision}}
		t.Failure = []Op{{Type: OpGet, Key: key}}
	}
	res, err := s.txn(ctx, &t)
	if err != nil {
		return 0, 0, err
	}
	if !res.Succeeded {
		return 0, res.Revision, &PreconditionError{Key: key, Current: res.Results[0].Record}
	}
	return res.Results[0].Deleted, res.Revision, nil
}

// Patch applies an RFC 7396 JSON merge patch to the document at key, creating
// it from {} when absent, atomically, and returns the merged record.
func (s *Service) Patch(ctx context.Context, key string, patch []byte) (*Record, error) {
	if err := s.route(key); err != nil {
		return nil, err
	}
	if !json.Valid(patch) {
		return nil, fmt.Errorf("%w: the patch is not valid JSON", ErrInvalidArgument)
	}
	if err := s.checkValue(key, patch); err != nil {
		return nil, err
	}
	res, err := s.txn(ctx, &Txn{Success: []Op{{Type: OpPatch, Key: key, Value: patch}}})
	if err != nil {
		return nil, err
	}
	return res.Results[0].Record, nil
}

// Txn runs a transaction atomically.
func (s *Service) Txn(ctx context.Context, t Txn) (*TxnResult, error) {
	if err := s.validateTxn(&t); err != nil {
		return nil, err
	}
	return s.txn(ctx, &t)
}

func (s *Service) validateTxn(t *Txn) error {
	for _, c := range t.Compare {
		if err := s.route(c.Key); err != nil {
			return err
		}
		switch c.Target {
		case TargetValue, TargetVersion, TargetCreateRevision, TargetModRevision:
			switch c.Op {
			case "=", "!=", "<", ">":
			default:
				return fmt.Errorf("%w: compare op %q", ErrInvalidArgument, c.Op)
			}
		case TargetExists:
			if c.Op != "=" && c.Op != "!=" {
				return fmt.Errorf("%w: compare op %q on exists (use = or !=)", ErrInvalidArgument, c.Op)
			}
		default:
			return fmt.Errorf("%w: compare target %q", ErrInvalidArgument, c.Target)
		}
	}
	for _, ops := range [][]Op{t.Success, t.Failure} {
		for _, op := range ops {
			switch op.Type {
			case OpDeletePrefix:
				if len(op.Key) > MaxKeyBytes {
					return fmt.Errorf("%w: prefix longer than %d bytes", ErrInvalidKey, MaxKeyBytes)
				}
				continue
			case OpGet, OpDelete, OpExpire:
			case OpPut, OpAppend:
				if err := s.checkValue(op.Key, op.Value); err != nil {
					return err
				}
			case OpIncr:
				if _, err := strconv.ParseInt(string(op.Value), 10, 64); err != nil {
					return fmt.Errorf("%w: increment %q", ErrNotInteger, op.Value)
				}
			case OpIncrFloat:
				if f, err := strconv.ParseFloat(string(op.Value), 64); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
					return fmt.Errorf("%w: increment %q", ErrNotFloat, op.Value)
				}
			case OpRename:
				if err := s.route(string(op.Value)); err != nil {
					return err
				}
			case OpPatch:
				if !json.Valid(op.Value) {
					return fmt.Errorf("%w: patch for %q is not valid JSON", ErrInvalidArgument, op.Key)
				}
			default:
				return fmt.Errorf("%w: op %q", ErrInvalidArgument, op.Type)
			}
			if op.TTL < 0 {
				return fmt.Errorf("%w: negative TTL", ErrInvalidArgument)
			}
			if err := s.route(op.Key); err != nil {
				return err
			}
		}
	}
	return nil
}

// TxnBatch runs several independent transactions in one Raft proposal, in
// order (front ends use it for pipelined writes). Each transaction is atomic
// on its own and has its own result or error; err is for the batch as a whole
// (no quorum, timeout), in which case none, some or all may have applied.
func (s *Service) TxnBatch(ctx context.Context, txns []Txn) (results []*TxnResult, errs []error, err error) {
	for try := 0; ; try++ {
		results, errs, err = s.txnBatch(ctx, txns)
		if !errors.Is(err, ErrAuthChanged) || try == authRetries-1 {
			return results, errs, err
		}
		if err := s.barrier(ctx, ReadOptions{}); err != nil {
			return nil, nil, err
		}
	}
}

func (s *Service) txnBatch(ctx context.Context, txns []Txn) (results []*TxnResult, errs []error, err error) {
	errs = make([]error, len(txns))
	results = make([]*TxnResult, len(txns))
	valid := make([]Txn, 0, len(txns))
	pos := make([]int, 0, len(txns))
	v := s.authView()
	for i := range txns {
		if errs[i] = s.validateTxn(&txns[i]); errs[i] == nil {
			errs[i] = s.authorizeTxn(ctx, v, &txns[i])
		}
		if errs[i] == nil {
			valid = append(valid, txns[i])
			pos = append(pos, i)
		}
	}
	if len(valid) == 0 {
		return results, errs, nil
	}
	res, err := s.propose(ctx, command{Type: cmdBatch, Batch: valid, AuthChecked: true, AuthRev: v.state.Rev})
	if err != nil {
		return nil, nil, err
	}
	if len(res.Batch) != len(valid) {
		return nil, nil, errors.New("kv: batch result has the wrong length")
	}
	for j, p := range pos {
		r, err := decodeResult(res.Batch[j])
		if err != nil {
			errs[p] = err
			continue
		}
		results[p] = r.Txn
	}
	return results, errs, nil
}

// authRetries bounds how often a write is checked and proposed again
// because users or rules changed in between (ErrAuthChanged).
const authRetries = 5

func (s *Service) txn(ctx context.Context, t *Txn) (*TxnResult, error) {
	var res *result
	var err error
	for try := 0; try < authRetries; try++ {
		v := s.authView()
		if err := s.authorizeTxn(ctx, v, t); err != nil {
			return nil, err
		}
		res, err = s.propose(ctx, command{Type: cmdTxn, Txn: t, AuthChecked: true, AuthRev: v.state.Rev})
		if !errors.Is(err, ErrAuthChanged) {
			break
		}
		// This node may not have applied the change yet; wait for it.
		if err := s.barrier(ctx, ReadOptions{}); err != nil {
			return nil, err
		}
	}
	if err != nil {
		return nil, err
	}
	if res.Txn == nil {
		return nil, errors.New("kv: empty txn result")
	}
	return res.Txn, nil
}

// expiryLoop proposes the deletion of expired keys while this node leads.
func (s *Service) expiryLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ExpiryInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if !s.node.IsLeader() {
			continue
		}
		items := s.expired(time.Now(), 1000)
		if len(items) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		if _, err := s.propose(ctx, command{Type: cmdExpire, Expire: items}); err != nil {
			s.log.Debug("expiry proposal failed", "err", err)
		}
		cancel()
	}
}

// expired lists keys whose TTL has passed at now, with the revision seen.
func (s *Service) expired(now time.Time, limit int) []expireItem {
	lo := []byte{prefixTTL}
	hi := ttlKey(now.UnixNano()+1, "")
	var items []expireItem
	_ = s.db.Scan(lo, hi, func(k, _ []byte) bool {
		key := string(k[9:])
		exp := int64(binary.BigEndian.Uint64(k[1:]))
		raw, err := s.db.Get(dataKey(key))
		if err != nil {
			return true
		}
		r, err := decodeRecord(key, raw)
		if err != nil || r.Expires != exp {
			return true
		}
		items = append(items, expireItem{Key: key, ModRevision: r.ModRevision})
		return len(items) < limit
	})
	return items
}

// Members lists every member with the addresses it advertises.
func (s *Service) Members(ctx context.Context) ([]Member, error) {
	// Membership is read like data: after a read barrier, this node's copy of
	// the configuration includes every change committed before the call.
	if err := s.barrier(ctx, ReadOptions{}); err != nil {
		return nil, err
	}
	servers, err := s.node.Servers()
	if err != nil {
		return nil, mapErr(err)
	}
	meta := map[string]Member{}
	err = s.db.Scan([]byte{prefixMember}, []byte{prefixMember + 1}, func(_, v []byte) bool {
		var m Member
		if json.Unmarshal(v, &m) == nil {
			meta[m.Name] = m
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	leader := s.node.Status().LeaderID
	out := make([]Member, 0, len(servers))
	for _, sv := range servers {
		m := meta[sv.ID]
		m.Name, m.PeerAddr, m.Voter, m.Leader = sv.ID, sv.Addr, sv.Voter, sv.ID == leader
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// AddMember adds a member to the Raft group and records its advertised addresses.
func (s *Service) AddMember(ctx context.Context, m MemberSpec) error {
	if err := s.CheckAdmin(ctx); err != nil {
		return err
	}
	if m.Name == "" || m.PeerAddr == "" {
		return fmt.Errorf("%w: a member needs a name and a peer address", ErrInvalidArgument)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := mapErr(s.node.AddMember(ctx, m.Name, m.PeerAddr, !m.NonVoter)); err != nil {
		return err
	}
	if m.ClientURL == "" && m.RESPAddr == "" {
		return nil
	}
	_, err := s.propose(ctx, command{Type: cmdMemberSet, Member: &Member{Name: m.Name, PeerAddr: m.PeerAddr, ClientURL: m.ClientURL, RESPAddr: m.RESPAddr}})
	return err
}

// RemoveMember removes a member and its metadata.
func (s *Service) RemoveMember(ctx context.Context, name string) error {
	if err := s.CheckAdmin(ctx); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	// A leader that removed itself shuts Raft down as soon as the change
	// commits (ShutdownOnRemove), and under load the answer to the change
	// can be lost in that shutdown: Raft shut down with a configuration that
	// no longer holds this node means the removal committed.
	removedSelf := func() bool {
		if name != s.cfg.Name || s.node.Status().State != "shutdown" {
			return false
		}
		servers, err := s.node.Servers()
		if err != nil {
			return false
		}
		for _, sv := range servers {
			if sv.ID == name {
				return false
			}
		}
		return true
	}
	if removedSelf() {
		return fmt.Errorf("%w: %s removed itself", ErrMemberNotFound, name) // a retry
	}
	// The metadata goes first: once the change has committed, a leader that
	// removed itself can propose nothing (it is out of the configuration and
	// hears from no leader), so a deletion proposed afterwards failed (503)
	// for a removal that had taken effect, and a retry got 404.
	old, _ := s.db.Get(memberKey(name))
	if _, err := s.propose(ctx, command{Type: cmdMemberDel, Name: name}); err != nil {
		return err
	}
	err := mapErr(s.node.RemoveMember(ctx, name))
	if err != nil && removedSelf() {
		return nil
	}
	if err != nil && old != nil && !errors.Is(err, ErrMemberNotFound) {
		// The member may still be in the configuration: put its addresses
		// back (best effort; a restarted member publishes them again). If
		// the removal took effect after all, the record is never listed.
		var m Member
		if json.Unmarshal(old, &m) == nil {
			_, _ = s.propose(ctx, command{Type: cmdMemberSet, Member: &m})
		}
	}
	return err
}

// PromoteMember makes a non-voter a voter.
func (s *Service) PromoteMember(ctx context.Context, name string) error {
	if err := s.CheckAdmin(ctx); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return mapErr(s.node.PromoteMember(ctx, name))
}

// TransferLeadership moves leadership to the named member (any when empty).
func (s *Service) TransferLeadership(ctx context.Context, to string) error {
	if err := s.CheckAdmin(ctx); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return mapErr(s.node.TransferLeadership(ctx, to))
}

// PublishSelf records this node's advertised addresses in the replicated
// state unless they are already there.
func (s *Service) PublishSelf(ctx context.Context, m Member) error {
	if raw, err := s.db.Get(memberKey(m.Name)); err == nil {
		var cur Member
		if json.Unmarshal(raw, &cur) == nil && cur == m {
			return nil
		}
	}
	_, err := s.propose(ctx, command{Type: cmdMemberSet, Member: &m})
	return err
}

// Status reports this node's view of the cluster.
func (s *Service) Status(ctx context.Context) (*Status, error) {
	st := s.node.Status()
	servers, _ := s.node.Servers()
	return &Status{
		Name:          s.cfg.Name,
		State:         st.State,
		Leader:        st.LeaderID,
		LeaderAddr:    st.LeaderAddr,
		Term:          st.Term,
		CommitIndex:   st.CommitIndex,
		AppliedIndex:  st.AppliedIndex,
		LastIndex:     st.LastIndex,
		Revision:      s.machine.Revision(),
		Members:       len(servers),
		LastContactMs: st.LastContact.Milliseconds(),
	}, nil
}

// readyLag is how far (in entries) the applied index may trail the commit
// index for the node to count as caught up.
const readyLag = 1000

// Ready returns nil when this node knows a leader, is in contact with it,
// has applied the log nearly to the commit index and, after a restart, at
// least as far as it had before (see raftnode.Node.CaughtUp).
func (s *Service) Ready() error {
	st := s.node.Status()
	if st.LeaderID == "" {
		return ErrNoLeader
	}
	if s.node.IsStale() {
		return fmt.Errorf("%w: no contact with the leader for %s", ErrNoLeader, st.LastContact)
	}
	if !s.node.CaughtUp() {
		return fmt.Errorf("%w: replaying the log after a restart (applied %d, log %d)", ErrUnavailable, st.AppliedIndex, st.LastIndex)
	}
	if st.CommitIndex > st.AppliedIndex+readyLag {
		return fmt.Errorf("%w: catching up (applied %d of %d)", ErrUnavailable, st.AppliedIndex, st.CommitIndex)
	}
	return nil
}

// IsStale reports whether local (serializable) reads may be out of date: no
// contact with a leader, or a restarted node still replaying its log (its
// state may be older than what it served before it stopped).
func (s *Service) IsStale() bool { return s.node.IsStale() || !s.node.CaughtUp() }

// Digest summarizes the replicated state: the revision and a hash of every
// key, value and metadata byte, read from one consistent snapshot. Replicas
// that applied the same log prefix have equal digests.
func (s *Service) Digest() (revision int64, hash uint64, err error) {
	snap := s.db.NewSnapshot()
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

// Snapshot takes a Raft snapshot on this node now and compacts its log.
func (s *Service) Snapshot() error { return mapErr(s.node.Snapshot()) }
