package kv

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/keyspace"
)

// KeyspaceChange is the answer to a change of a keyspace policy: the policy
// in force (for a delete, the one removed) and the members that had not
// applied the change when the call gave up waiting for them (empty when
// every member has it).
type KeyspaceChange struct {
	Policy  keyspace.Policy
	Pending []string
}

// Keyspace returns the policy of exactly prefix, or ErrNotFound (admin:
// policies are cluster configuration). It reads after a barrier, so it
// reflects every change committed before the call.
func (s *Service) Keyspace(ctx context.Context, prefix string) (*keyspace.Policy, error) {
	ps, err := s.ListKeyspaces(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if p.Prefix == prefix {
			return &p, nil
		}
	}
	return nil, fmt.Errorf("%w: keyspace %q", ErrNotFound, prefix)
}

// ListKeyspaces returns every policy in prefix order, the empty prefix's
// first (admin), after a barrier.
func (s *Service) ListKeyspaces(ctx context.Context) ([]keyspace.Policy, error) {
	if err := s.CheckAdmin(ctx); err != nil {
		return nil, err
	}
	if err := s.ctl.Barrier(ctx); err != nil {
		return nil, err
	}
	ps := s.ctl.Keyspaces().Policies()
	sortPolicies(ps)
	return ps, nil
}

func sortPolicies(ps []keyspace.Policy) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].Prefix < ps[j].Prefix })
}

// PutKeyspace creates or changes the policy of p.Prefix (admin). A policy
// over a prefix that already holds keys, or one that changes a keyspace's
// mode, is refused with ErrConflict; a mode no engine of this node serves
// with ErrUnsupportedMode. The empty prefix's policy may be changed but
// stays strong.
func (s *Service) PutKeyspace(ctx context.Context, p keyspace.Policy) (*KeyspaceChange, error) {
	if err := s.CheckAdmin(ctx); err != nil {
		return nil, err
	}
	if err := validPrefix(p.Prefix); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	if p.Prefix == "" && p.Mode != keyspace.Strong {
		return nil, fmt.Errorf("%w: the empty prefix's keyspace is always strong", ErrInvalidArgument)
	}
	if s.engines[p.Mode] == nil {
		return nil, fmt.Errorf("%w: this version has no engine for %s keyspaces; only %s", ErrUnsupportedMode, p.Mode, strings.Join(s.modes(), ", "))
	}
	if p.Mode == keyspace.Strong {
		// Raft replicates a strong keyspace to every voter; the
		// eventual fields mean nothing there.
		if p.Replicas != 0 || p.WriteQuorum != 0 || p.ReadQuorum != 0 || p.SloppyQuorum {
			return nil, fmt.Errorf("%w: replicas, write_quorum, read_quorum and sloppy_quorum apply to eventual keyspaces only", ErrInvalidArgument)
		}
	}
	if p.MaxValueBytes > s.cfg.MaxValueBytes {
		return nil, fmt.Errorf("%w: max_value_bytes %d is over the node's limit of %d", ErrInvalidArgument, p.MaxValueBytes, s.cfg.MaxValueBytes)
	}
	if cur := s.ctl.Keyspaces().Lookup(p.Prefix); cur.Prefix != p.Prefix {
		// A new keyspace: the strong engine refuses it at apply when strong
		// keys live under the prefix; eventual keys are asked for here.
		if err := s.refuseEventualKeys(ctx, p.Prefix, func(string) bool { return true }); err != nil {
			return nil, err
		}
	}
	pending, err := s.ctl.SetKeyspace(ctx, p)
	if err != nil {
		return nil, err
	}
	return &KeyspaceChange{Policy: p, Pending: nonNil(pending)}, nil
}

// DeleteKeyspace removes the policy of prefix (admin): its keys fall to the
// next shorter prefix's policy, so a keyspace that holds keys is refused
// with ErrConflict. The empty prefix's policy cannot be deleted.
func (s *Service) DeleteKeyspace(ctx context.Context, prefix string) (*KeyspaceChange, error) {
	if err := s.CheckAdmin(ctx); err != nil {
		return nil, err
	}
	if err := validPrefix(prefix); err != nil {
		return nil, err
	}
	if prefix == "" {
		return nil, fmt.Errorf("%w: the empty prefix's keyspace cannot be deleted", ErrInvalidArgument)
	}
	old, err := s.Keyspace(ctx, prefix)
	if err != nil {
		return nil, err
	}
	if old.Mode == keyspace.Eventual {
		tbl := s.ctl.Keyspaces()
		if err := s.refuseEventualKeys(ctx, prefix, func(k string) bool { return tbl.Lookup(k).Prefix == prefix }); err != nil {
			return nil, err
		}
	}
	pending, err := s.ctl.DeleteKeyspace(ctx, prefix)
	if err != nil {
		return nil, err
	}
	return &KeyspaceChange{Policy: *old, Pending: nonNil(pending)}, nil
}

// refuseEventualKeys returns ErrConflict when the eventual engine holds a
// live key under prefix that in counts. The eventual engine has no log to
// decide this at apply as the strong one does: a key written under the
// prefix while the change commits can still move keyspace.
func (s *Service) refuseEventualKeys(ctx context.Context, prefix string, in func(string) bool) error {
	e := s.engines[keyspace.Eventual]
	if e == nil {
		return nil
	}
	tbl := s.ctl.Keyspaces()
	eventual := tbl.Lookup(prefix).Mode == keyspace.Eventual
	for _, q := range tbl.Policies() {
		eventual = eventual || (q.Mode == keyspace.Eventual && strings.HasPrefix(q.Prefix, prefix))
	}
	if !eventual {
		return nil
	}
	res, err := e.List(ctx, prefix, ListOptions{KeysOnly: true, Limit: 1}, in)
	if err != nil {
		return err
	}
	if len(res.Items) > 0 {
		return fmt.Errorf("%w: the eventual key %q lives under %q; delete the keys under the prefix first", ErrConflict, res.Items[0].Key, prefix)
	}
	return nil
}

// validPrefix checks a keyspace prefix: a key prefix (the empty one
// included) of at most MaxKeyBytes with no NUL byte.
func validPrefix(prefix string) error {
	if len(prefix) > MaxKeyBytes {
		return fmt.Errorf("%w: prefix is %d bytes, the limit is %d", ErrInvalidKey, len(prefix), MaxKeyBytes)
	}
	if strings.IndexByte(prefix, 0) >= 0 {
		return fmt.Errorf("%w: prefix contains a NUL byte", ErrInvalidKey)
	}
	return nil
}

// modes lists the modes this service has engines for.
func (s *Service) modes() []string {
	var out []string
	for _, m := range []keyspace.Mode{keyspace.Strong, keyspace.Eventual} {
		if s.engines[m] != nil {
			out = append(out, string(m))
		}
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// EnsureKeyspace creates p unless the cluster has a policy for p.Prefix
// already, as the node itself: a front end that owns a keyspace (the Repose
// datastore API) calls it on first use, whoever the caller is; the caller's
// own permissions are checked on the keys as usual.
//
// Only an identified caller (when rules require one) makes the node do it,
// and a node with no engine for p.Mode leaves the keys to the keyspace
// they fall in.
func (s *Service) EnsureKeyspace(ctx context.Context, p keyspace.Policy) error {
	if s.ctl.Keyspaces().Lookup(p.Prefix).Prefix == p.Prefix || s.engines[p.Mode] == nil {
		return nil
	}
	if _, err := s.authView().caller(ctx); err != nil {
		return err
	}
	_, err := s.PutKeyspace(auth.WithIdentity(ctx, auth.System), p)
	if err != nil && s.ctl.Keyspaces().Lookup(p.Prefix).Prefix == p.Prefix {
		return nil // another node created it meanwhile
	}
	if err != nil {
		return fmt.Errorf("the keyspace %q cannot be created: %w", p.Prefix, err)
	}
	return nil
}
