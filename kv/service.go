// Package kv is the front door every front end calls: get, put, delete,
// list, transactions and JSON merge-patch with revisions, TTLs and
// compare-and-swap, plus cluster and auth administration. It owns the types
// of the API, its errors and their protocol-neutral codes (CodeOf), input
// validation and the ACL checks; it holds no data of its own.
//
// Service routes each key by its keyspace policy (the longest matching
// prefix) to the Engine that serves that mode, and the control plane
// (membership, users and rules, policies) to Control. The strong engine
// (internal/strong, a Raft group) provides both today; the eventual engine
// plugs in beside it as a second Engine.
//
//	front ends ──▶ Service ──▶ keyspace policy ──▶ Engine (strong | eventual)
//	                  └──────▶ Control (replicated control plane)
package kv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/keyspace"
)

// Engine stores and serves the keys of the keyspaces of one mode. The
// service has validated every key and value and checked access before it
// calls an engine; an engine keeps its own bytes and never sees a front end.
type Engine interface {
	// Get returns key's record, or nil when the key is absent or expired,
	// at the consistency o asks for.
	Get(ctx context.Context, key string, o ReadOptions) (*Record, error)
	// List returns the live records under prefix in key order, after
	// o.After, at most o.Limit of them (0: no limit), skipping every key
	// visible refuses; visible is called after the engine has reached the
	// read point o asks for.
	List(ctx context.Context, prefix string, o ListOptions, visible func(key string) bool) (*ListResult, error)
	// Apply runs each transaction atomically, in order, and returns a
	// result or an error for each. authRev is the revision of the users and
	// rules (AuthState.Rev) the caller checked access against: a
	// transaction applied after they changed fails with ErrAuthChanged and
	// has no effect. err is for the call as a whole (no quorum, timeout):
	// then none, some or all of the transactions may have applied.
	Apply(ctx context.Context, txns []Txn, authRev uint64) (results []*TxnResult, errs []error, err error)
	// Ready returns nil when the engine can serve requests.
	Ready() error
}

// Control is the replicated control plane every node agrees on: cluster
// membership, the replicated users and ACL rules, and keyspace policies.
// The strong engine provides it.
type Control interface {
	// Barrier returns once this node's copy of the control plane includes
	// every change committed before the call.
	Barrier(ctx context.Context) error
	// AuthState is the replicated users and rules as applied on this node.
	AuthState() *AuthState
	// ChangeAuth replicates one change of users or rules.
	ChangeAuth(ctx context.Context, c AuthChange) error
	// Keyspaces is the table of policies as applied on this node.
	Keyspaces() *keyspace.Table
	// SetKeyspace creates or changes the policy of p.Prefix, and
	// DeleteKeyspace removes the policy of prefix; the service has
	// validated them. Either is refused with ErrConflict when it would move
	// keys that exist into another keyspace or change a keyspace's mode.
	// Once the change has committed they wait (bounded) until every member
	// has applied it and return the names of the members that have not.
	SetKeyspace(ctx context.Context, p keyspace.Policy) (pending []string, err error)
	DeleteKeyspace(ctx context.Context, prefix string) (pending []string, err error)

	Members(ctx context.Context) ([]Member, error)
	AddMember(ctx context.Context, m MemberSpec) error
	RemoveMember(ctx context.Context, name string) error
	PromoteMember(ctx context.Context, name string) error
	TransferLeadership(ctx context.Context, to string) error
	// PublishMember records a member's advertised addresses unless they
	// are already recorded.
	PublishMember(ctx context.Context, m Member) error
	// Status is this node's view of the cluster.
	Status(ctx context.Context) (*Status, error)
	// Snapshot takes a snapshot of the replicated state now.
	Snapshot() error
	// IsStale reports whether this node's local state may be out of date.
	IsStale() bool
	// Replayed reports whether this node's copy of the control plane is at
	// least as current as it was before the node last stopped: until then
	// its keyspace policies may be older than what it routed by before.
	Replayed() bool
}

// Config configures a Service.
type Config struct {
	// MaxValueBytes is the largest value accepted (a keyspace policy may
	// lower it for its keys).
	MaxValueBytes int64
	Logger        *slog.Logger
	// AuthUsers and AuthRules are the config file's users and ACL rules,
	// evaluated before the replicated ones (see auth.go).
	AuthUsers []auth.User
	AuthRules []auth.Rule
	// CheckWrite, when set, may refuse a key about to be written (an
	// ErrInvalidKey): the node's materialized directories use it to refuse
	// keys that cannot be files.
	CheckWrite func(key string) error
	// ReadFallback, when set, reads a key from its keyspace's backup
	// mirror (package backup/mirror), for a read its replicas could not
	// answer (ReadOptions.Fallback); a missing key is an ErrKeyNotFound.
	ReadFallback func(ctx context.Context, key string) (*Record, error)
	// Mirrors, when set, reports the keyspace mirrors (Status.Mirrors).
	Mirrors func() any
}

// Service implements the cairn API on one node.
type Service struct {
	cfg       Config
	log       *slog.Logger
	engines   map[keyspace.Mode]Engine
	ctl       Control
	passwords *auth.PasswordCache
	authCache atomic.Pointer[authView]
}

// NewService returns the service over the engines that serve each keyspace
// mode and the control plane.
func NewService(cfg Config, engines map[keyspace.Mode]Engine, ctl Control) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxValueBytes <= 0 {
		cfg.MaxValueBytes = 1 << 20
	}
	return &Service{cfg: cfg, log: cfg.Logger.With("subsystem", "kv"), engines: engines, ctl: ctl,
		passwords: auth.NewPasswordCache()}
}

// Keyspaces returns the policy table.
func (s *Service) Keyspaces() *keyspace.Table { return s.ctl.Keyspaces() }

// route checks the key and returns the engine of its keyspace.
func (s *Service) route(key string) (Engine, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	return s.engineFor(key)
}

func (s *Service) engineFor(key string) (Engine, error) {
	if !s.ctl.Replayed() {
		return nil, fmt.Errorf("%w: this node is replaying its log after a restart; its keyspace policies are not loaded yet", ErrUnavailable)
	}
	p := s.ctl.Keyspaces().Lookup(key)
	e := s.engines[p.Mode]
	if e == nil {
		return nil, fmt.Errorf("%w: %q is in keyspace %q (%s)", ErrUnsupportedMode, key, p.Prefix, p.Mode)
	}
	return e, nil
}

// prefixEngine returns the engine of a whole prefix, which must lie in
// keyspaces of one mode.
func (s *Service) prefixEngine(prefix string) (Engine, error) {
	if len(prefix) > MaxKeyBytes {
		return nil, fmt.Errorf("%w: prefix longer than %d bytes", ErrInvalidKey, MaxKeyBytes)
	}
	e, err := s.engineFor(prefix)
	if err != nil {
		return nil, err
	}
	for _, p := range s.ctl.Keyspaces().Policies() {
		if len(p.Prefix) > len(prefix) && p.Prefix[:len(prefix)] == prefix && s.engines[p.Mode] != e {
			return nil, fmt.Errorf("%w: prefix %q spans keyspace %q (%s)", ErrUnsupportedMode, prefix, p.Prefix, p.Mode)
		}
	}
	return e, nil
}

func (s *Service) checkValue(key string, v []byte) error {
	if err := s.checkWrite(key); err != nil {
		return err
	}
	limit := s.cfg.MaxValueBytes
	if p := s.ctl.Keyspaces().Lookup(key); p.MaxValueBytes > 0 && p.MaxValueBytes < limit {
		limit = p.MaxValueBytes
	}
	if int64(len(v)) > limit {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrValueTooLarge, len(v), limit)
	}
	return nil
}

func (s *Service) checkWrite(key string) error {
	if s.cfg.CheckWrite == nil {
		return nil
	}
	return s.cfg.CheckWrite(key)
}

// Get returns the record at key, or ErrKeyNotFound.
func (s *Service) Get(ctx context.Context, key string, o ReadOptions) (*Record, error) {
	e, err := s.route(key)
	if err != nil {
		return nil, err
	}
	p := s.ctl.Keyspaces().Lookup(key)
	if o.Fallback && p.Backup == "" {
		return nil, fmt.Errorf("%w: fallback=backup: keyspace %q has no backup mirror", ErrInvalidArgument, p.Prefix)
	}
	r, err := e.Get(ctx, key, o)
	if err != nil {
		if o.Fallback && s.cfg.ReadFallback != nil &&
			(errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNoLeader) || errors.Is(err, context.DeadlineExceeded)) {
			return s.readFallback(ctx, key, err)
		}
		return nil, err
	}
	// After the read point: a linearizable read is checked against every
	// change of users and rules committed before it started.
	if err := s.allow(ctx, auth.Read, key); err != nil {
		return nil, err
	}
	if r == nil {
		return nil, keyNotFound(key)
	}
	return r, nil
}

// readFallback serves a read the replicas could not answer (why) from the
// key's backup mirror, under the same access rules; its time is its own,
// since the replicas may have used up the request's.
func (s *Service) readFallback(ctx context.Context, key string, why error) (*Record, error) {
	if err := s.allow(ctx, auth.Read, key); err != nil {
		return nil, err
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fallbackTimeout)
	defer cancel()
	r, err := s.cfg.ReadFallback(fctx, key)
	switch {
	case errors.Is(err, ErrKeyNotFound):
		return nil, fmt.Errorf("%w: %q is not in the backup mirror (the replicas could not answer: %v)", ErrKeyNotFound, key, why)
	case err != nil:
		return nil, fmt.Errorf("%w (the backup mirror could not answer either: %v)", why, err)
	}
	r.Source = SourceBackup
	s.log.Debug("read served by the backup mirror", "key", key, "why", why)
	return r, nil
}

// fallbackTimeout bounds a read from the backup mirror.
const fallbackTimeout = 10 * time.Second

// List returns the keys under prefix in order, one page at a time. Only keys
// the caller may read are listed, wherever the range starts. A prefix that
// spans keyspaces of both modes lists both engines' keys, merged in key
// order (the page's revision is the strong engine's).
func (s *Service) List(ctx context.Context, prefix string, o ListOptions) (*ListResult, error) {
	if o.Limit < 0 {
		return nil, fmt.Errorf("%w: negative limit", ErrInvalidArgument)
	}
	engines, err := s.listEngines(prefix)
	if err != nil {
		return nil, err
	}
	// The rules are taken once the engine has reached its read point, at
	// the first key it offers.
	var (
		mu sync.Mutex
		v  *authView
		id auth.Identity
	)
	visible := func(key string) bool {
		mu.Lock()
		if v == nil {
			v = s.authView()
			id = auth.FromContext(ctx)
		}
		av := v
		mu.Unlock()
		return av.policy.Allow(id, auth.Read, key)
	}
	var res *ListResult
	if len(engines) == 1 {
		res, err = engines[0].List(ctx, prefix, o, visible)
	} else {
		res, err = s.listMerged(ctx, engines, prefix, o, visible)
	}
	if err != nil {
		return nil, err
	}
	if v == nil {
		v = s.authView()
	}
	if _, err := v.caller(ctx); err != nil {
		return nil, err
	}
	return res, nil
}

// listEngines returns the engines that hold keys under prefix, the one of
// the prefix's own keyspace first.
func (s *Service) listEngines(prefix string) ([]Engine, error) {
	if len(prefix) > MaxKeyBytes {
		return nil, fmt.Errorf("%w: prefix longer than %d bytes", ErrInvalidKey, MaxKeyBytes)
	}
	first, err := s.engineFor(prefix)
	if err != nil {
		return nil, err
	}
	out := []Engine{first}
	for _, p := range s.ctl.Keyspaces().Policies() {
		if len(p.Prefix) > len(prefix) && p.Prefix[:len(prefix)] == prefix {
			e := s.engines[p.Mode]
			if e == nil {
				return nil, fmt.Errorf("%w: prefix %q spans keyspace %q (%s)", ErrUnsupportedMode, prefix, p.Prefix, p.Mode)
			}
			if !slices.Contains(out, e) {
				out = append(out, e)
			}
		}
	}
	return out, nil
}

// listMerged lists one page from each engine and merges them: every key up
// to the smallest last key of an engine that has more is in the page.
func (s *Service) listMerged(ctx context.Context, engines []Engine, prefix string, o ListOptions, visible func(string) bool) (*ListResult, error) {
	out := &ListResult{}
	var (
		cut    string
		hasCut bool
	)
	for i, e := range engines {
		r, err := e.List(ctx, prefix, o, visible)
		if err != nil {
			return nil, err
		}
		if i == 0 || out.Revision == 0 {
			out.Revision = r.Revision
		}
		out.Items = append(out.Items, r.Items...)
		if r.More && len(r.Items) > 0 {
			if last := r.Items[len(r.Items)-1].Key; !hasCut || last < cut {
				cut, hasCut = last, true
			}
			out.More = true
		}
	}
	slices.SortFunc(out.Items, func(a, b *Record) int { return strings.Compare(a.Key, b.Key) })
	if hasCut {
		n := 0
		for n < len(out.Items) && out.Items[n].Key <= cut {
			n++
		}
		out.Items = out.Items[:n]
	}
	if o.Limit > 0 && len(out.Items) > o.Limit {
		out.Items, out.More = out.Items[:o.Limit], true
	}
	return out, nil
}

// Put writes value at key.
func (s *Service) Put(ctx context.Context, key string, value []byte, o PutOptions) (*Record, error) {
	e, err := s.route(key)
	if err != nil {
		return nil, err
	}
	if err := s.checkValue(key, value); err != nil {
		return nil, err
	}
	if o.TTL < 0 {
		return nil, fmt.Errorf("%w: negative TTL", ErrInvalidArgument)
	}
	if o.TTL == 0 {
		o.TTL = s.ctl.Keyspaces().Lookup(key).DefaultTTL
	}
	t := Txn{Success: []Op{{Type: OpPut, Key: key, Value: value, TTL: o.TTL}}, WriteQuorum: o.WriteQuorum}
	if o.IfModRevision != nil {
		t.Compare = append(t.Compare, Compare{Key: key, Target: TargetModRevision, Op: "=", Number: *o.IfModRevision})
	}
	if o.IfAbsent {
		t.Compare = append(t.Compare, Compare{Key: key, Target: TargetExists, Op: "=", Exists: false})
	}
	if len(t.Compare) > 0 {
		t.Failure = []Op{{Type: OpGet, Key: key}}
	}
	res, err := s.txn(ctx, e, &t)
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
	var e Engine
	if o.Prefix {
		if e, err = s.prefixEngine(key); err != nil {
			return 0, 0, err
		}
		if o.IfModRevision != nil {
			return 0, 0, fmt.Errorf("%w: a revision condition needs a single key", ErrInvalidArgument)
		}
	} else if e, err = s.route(key); err != nil {
		return 0, 0, err
	}
	op := OpDelete
	if o.Prefix {
		op = OpDeletePrefix
	}
	t := Txn{Success: []Op{{Type: op, Key: key}}, WriteQuorum: o.WriteQuorum}
	if o.IfModRevision != nil {
		t.Compare = []Compare{{Key: key, Target: TargetModRevision, Op: "=", Number: *o.IfModRevision}}
		t.Failure = []Op{{Type: OpGet, Key: key}}
	}
	res, err := s.txn(ctx, e, &t)
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
	e, err := s.route(key)
	if err != nil {
		return nil, err
	}
	if !json.Valid(patch) {
		return nil, fmt.Errorf("%w: the patch is not valid JSON", ErrInvalidArgument)
	}
	if err := s.checkValue(key, patch); err != nil {
		return nil, err
	}
	res, err := s.txn(ctx, e, &Txn{Success: []Op{{Type: OpPatch, Key: key, Value: patch}}})
	if err != nil {
		return nil, err
	}
	return res.Results[0].Record, nil
}

// Txn runs a transaction atomically.
func (s *Service) Txn(ctx context.Context, t Txn) (*TxnResult, error) {
	e, err := s.validateTxn(&t)
	if err != nil {
		return nil, err
	}
	return s.txn(ctx, e, &t)
}

// validateTxn checks every compare and op of t and returns the one engine
// that serves all of its keys.
func (s *Service) validateTxn(t *Txn) (Engine, error) {
	var eng Engine
	same := func(e Engine, key string) error {
		if eng == nil {
			eng = e
		} else if e != eng {
			return fmt.Errorf("%w: %q is in a keyspace of another mode than the rest of the transaction", ErrUnsupportedMode, key)
		}
		return nil
	}
	use := func(key string) error {
		e, err := s.route(key)
		if err != nil {
			return err
		}
		return same(e, key)
	}
	for _, c := range t.Compare {
		if err := use(c.Key); err != nil {
			return nil, err
		}
		switch c.Target {
		case TargetValue, TargetVersion, TargetCreateRevision, TargetModRevision:
			switch c.Op {
			case "=", "!=", "<", ">":
			default:
				return nil, fmt.Errorf("%w: compare op %q", ErrInvalidArgument, c.Op)
			}
		case TargetExists:
			if c.Op != "=" && c.Op != "!=" {
				return nil, fmt.Errorf("%w: compare op %q on exists (use = or !=)", ErrInvalidArgument, c.Op)
			}
		default:
			return nil, fmt.Errorf("%w: compare target %q", ErrInvalidArgument, c.Target)
		}
	}
	for _, ops := range [][]Op{t.Success, t.Failure} {
		for _, op := range ops {
			switch op.Type {
			case OpDeletePrefix:
				e, err := s.prefixEngine(op.Key)
				if err != nil {
					return nil, err
				}
				if err := same(e, op.Key); err != nil {
					return nil, err
				}
				continue
			case OpGet, OpDelete, OpExpire:
			case OpPut, OpAppend:
				if err := s.checkValue(op.Key, op.Value); err != nil {
					return nil, err
				}
			case OpIncr:
				if err := s.checkWrite(op.Key); err != nil {
					return nil, err
				}
				if _, err := strconv.ParseInt(string(op.Value), 10, 64); err != nil {
					return nil, fmt.Errorf("%w: increment %q", ErrNotInteger, op.Value)
				}
			case OpIncrFloat:
				if err := s.checkWrite(op.Key); err != nil {
					return nil, err
				}
				if f, err := strconv.ParseFloat(string(op.Value), 64); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
					return nil, fmt.Errorf("%w: increment %q", ErrNotFloat, op.Value)
				}
			case OpRename:
				if err := use(string(op.Value)); err != nil {
					return nil, err
				}
				if err := s.checkWrite(string(op.Value)); err != nil {
					return nil, err
				}
			case OpPatch:
				if !json.Valid(op.Value) {
					return nil, fmt.Errorf("%w: patch for %q is not valid JSON", ErrInvalidArgument, op.Key)
				}
			default:
				return nil, fmt.Errorf("%w: op %q", ErrInvalidArgument, op.Type)
			}
			if op.TTL < 0 {
				return nil, fmt.Errorf("%w: negative TTL", ErrInvalidArgument)
			}
			if err := use(op.Key); err != nil {
				return nil, err
			}
		}
	}
	if eng == nil { // an empty transaction
		return s.engineFor("")
	}
	return eng, nil
}

// TxnBatch runs several independent transactions in one engine call, in
// order (front ends use it for pipelined writes). Each transaction is atomic
// on its own and has its own result or error; err is for the batch as a whole
// (no quorum, timeout), in which case none, some or all may have applied.
func (s *Service) TxnBatch(ctx context.Context, txns []Txn) (results []*TxnResult, errs []error, err error) {
	for try := 0; ; try++ {
		results, errs, err = s.txnBatch(ctx, txns)
		if !errors.Is(err, ErrAuthChanged) || try == authRetries-1 {
			return results, errs, err
		}
		if err := s.ctl.Barrier(ctx); err != nil {
			return nil, nil, err
		}
	}
}

func (s *Service) txnBatch(ctx context.Context, txns []Txn) (results []*TxnResult, errs []error, err error) {
	errs = make([]error, len(txns))
	results = make([]*TxnResult, len(txns))
	v := s.authView()
	// Consecutive transactions of one engine go in one call; a batch that
	// changes engine is split, in order.
	var (
		eng   Engine
		valid []Txn
		pos   []int
	)
	flush := func() error {
		if len(valid) == 0 {
			return nil
		}
		res, rerrs, err := eng.Apply(ctx, valid, v.state.Rev)
		if err != nil {
			return err
		}
		for j, p := range pos {
			results[p], errs[p] = res[j], rerrs[j]
			if errors.Is(rerrs[j], ErrAuthChanged) {
				return rerrs[j]
			}
		}
		valid, pos = valid[:0], pos[:0]
		return nil
	}
	for i := range txns {
		e, err := s.validateTxn(&txns[i])
		if err == nil {
			err = s.authorizeTxn(ctx, v, &txns[i])
		}
		if err != nil {
			errs[i] = err
			continue
		}
		if e != eng {
			if err := flush(); err != nil {
				return nil, nil, err
			}
			eng = e
		}
		valid = append(valid, txns[i])
		pos = append(pos, i)
	}
	if err := flush(); err != nil {
		return nil, nil, err
	}
	return results, errs, nil
}

// authRetries bounds how often a write is checked and applied again
// because users or rules changed in between (ErrAuthChanged).
const authRetries = 5

// txn checks access to t and applies it on e, the engine of its keys (the
// caller has validated it).
func (s *Service) txn(ctx context.Context, e Engine, t *Txn) (*TxnResult, error) {
	for try := 0; ; try++ {
		v := s.authView()
		if err := s.authorizeTxn(ctx, v, t); err != nil {
			return nil, err
		}
		res, errs, err := e.Apply(ctx, []Txn{*t}, v.state.Rev)
		if err == nil {
			err = errs[0]
		}
		if !errors.Is(err, ErrAuthChanged) || try == authRetries-1 {
			if err != nil {
				return nil, err
			}
			return res[0], nil
		}
		// This node may not have applied the change yet; wait for it.
		if err := s.ctl.Barrier(ctx); err != nil {
			return nil, err
		}
	}
}

// Members lists every member with the addresses it advertises.
func (s *Service) Members(ctx context.Context) ([]Member, error) { return s.ctl.Members(ctx) }

// AddMember adds a member and records its advertised addresses (admin).
func (s *Service) AddMember(ctx context.Context, m MemberSpec) error {
	if err := s.CheckAdmin(ctx); err != nil {
		return err
	}
	if m.Name == "" || m.PeerAddr == "" {
		return fmt.Errorf("%w: a member needs a name and a peer address", ErrInvalidArgument)
	}
	return s.ctl.AddMember(ctx, m)
}

// RemoveMember removes a member and its metadata (admin).
func (s *Service) RemoveMember(ctx context.Context, name string) error {
	if err := s.CheckAdmin(ctx); err != nil {
		return err
	}
	return s.ctl.RemoveMember(ctx, name)
}

// PromoteMember makes a non-voter a voter (admin).
func (s *Service) PromoteMember(ctx context.Context, name string) error {
	if err := s.CheckAdmin(ctx); err != nil {
		return err
	}
	return s.ctl.PromoteMember(ctx, name)
}

// TransferLeadership moves leadership to the named member, any when empty (admin).
func (s *Service) TransferLeadership(ctx context.Context, to string) error {
	if err := s.CheckAdmin(ctx); err != nil {
		return err
	}
	return s.ctl.TransferLeadership(ctx, to)
}

// PublishSelf records this node's advertised addresses in the replicated
// state unless they are already there.
func (s *Service) PublishSelf(ctx context.Context, m Member) error {
	return s.ctl.PublishMember(ctx, m)
}

// Status reports this node's view of the cluster, with each member's
// health as the eventual engine's failure detector sees it.
func (s *Service) Status(ctx context.Context) (*Status, error) {
	st, err := s.ctl.Status(ctx)
	if err == nil && st != nil {
		if pl := s.placement(); pl != nil {
			st.Health = pl.Health()
		}
		if s.cfg.Mirrors != nil {
			st.Mirrors = s.cfg.Mirrors()
		}
	}
	return st, err
}

// Ready returns nil when every engine can serve.
func (s *Service) Ready() error {
	for _, e := range s.engines {
		if err := e.Ready(); err != nil {
			return err
		}
	}
	return nil
}

// IsStale reports whether local (serializable) reads may be out of date.
func (s *Service) IsStale() bool { return s.ctl.IsStale() }

// Snapshot takes a snapshot of the replicated state on this node now.
func (s *Service) Snapshot() error { return s.ctl.Snapshot() }
