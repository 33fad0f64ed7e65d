package strong

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cairnkv/cairn/internal/store"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// Keyspace policies are control-plane state: set and deleted only through
// the log, stored under 0x06 keys, and held in a keyspace.Table that the
// service looks every key up in. Every replica applies the same changes at
// the same log positions, so every node routes a key the same way once it
// has applied as far. kv.Service manages them (PutKeyspace, DeleteKeyspace);
// the machine refuses, deterministically at apply, a change that would move
// records between keyspaces (applyKeyspace).

// Keyspaces returns the policy table as applied on this node.
func (m *Machine) Keyspaces() *keyspace.Table { return m.keyspaces }

func (m *Machine) loadKeyspaces() error {
	var ps []keyspace.Policy
	var derr error
	lo := []byte{prefixKeyspace}
	err := m.db.Scan(lo, store.PrefixEnd(lo), func(_, v []byte) bool {
		var p keyspace.Policy
		if derr = json.Unmarshal(v, &p); derr != nil {
			return false
		}
		ps = append(ps, p)
		return true
	})
	if err == nil {
		err = derr
	}
	if err == nil {
		err = m.keyspaces.Set(ps)
	}
	if err != nil {
		return fmt.Errorf("strong: load keyspace policies: %w", err)
	}
	return nil
}

// applyKeyspace sets (p != nil) or deletes the policy of prefix at the
// entry's time now. It runs on the apply goroutine only. A change that would
// move live records into another keyspace (a new policy over a prefix that
// holds keys, a deleted one whose keyspace holds keys) or change a
// keyspace's mode is refused with kv.ErrConflict and changes nothing: the
// records of a keyspace belong to its mode's engine.
func (ab *applyBatch) applyKeyspace(now int64, prefix string, p *keyspace.Policy) error {
	m := ab.m
	var (
		next []keyspace.Policy
		cur  *keyspace.Policy
	)
	for _, c := range m.keyspaces.Policies() {
		if c.Prefix == prefix {
			cur = &c
			continue
		}
		next = append(next, c)
	}
	if p == nil {
		if prefix == "" {
			return fmt.Errorf("%w: the policy of the empty prefix cannot be deleted", kv.ErrInvalidArgument)
		}
		if cur == nil {
			return fmt.Errorf("%w: keyspace %q", kv.ErrNotFound, prefix)
		}
	} else {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("%w: %w", kv.ErrInvalidArgument, err)
		}
		if prefix == "" && p.Mode != keyspace.Strong {
			return fmt.Errorf("%w: the empty prefix is always strong", kv.ErrInvalidArgument)
		}
		next = append(next, *p)
	}
	switch {
	case cur != nil && p != nil && cur.Mode != p.Mode:
		return fmt.Errorf("%w: keyspace %q is %s; its mode cannot change (delete it while it is empty and create it again)", kv.ErrConflict, prefix, cur.Mode)
	case cur == nil || p == nil:
		key, err := ab.liveKeyIn(now, prefix)
		if err != nil {
			return err
		}
		if key != "" {
			verb := "create a keyspace over"
			if p == nil {
				verb = "delete keyspace"
			}
			return fmt.Errorf("%w: cannot %s %q: it holds keys (%q); delete them first", kv.ErrConflict, verb, prefix, key)
		}
	}
	if err := m.keyspaces.Set(next); err != nil {
		return fmt.Errorf("%w: %w", kv.ErrInvalidArgument, err)
	}
	if p == nil {
		ab.b.Delete(keyspaceKey(prefix))
		return nil
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("%w: %w", kv.ErrInvalidArgument, err)
	}
	ab.b.Set(keyspaceKey(prefix), raw)
	return nil
}

// liveKeyIn returns a key that is live at now, lies under prefix and whose
// keyspace is prefix's (not a longer policy's below it), as the batch sees
// the state; "" when there is none. It stops at the first one.
func (ab *applyBatch) liveKeyIn(now int64, prefix string) (string, error) {
	tbl := ab.m.keyspaces
	ours := func(key string) bool {
		return strings.HasPrefix(key, prefix) && len(tbl.Lookup(key).Prefix) <= len(prefix)
	}
	live := func(r *kv.Record) bool { return r != nil && (r.Expires == 0 || r.Expires > now) }
	for k, r := range ab.pending {
		if live(r) && ours(k) {
			return k, nil
		}
	}
	var (
		found string
		derr  error
	)
	lo := dataKey(prefix)
	err := ab.m.db.Scan(lo, store.PrefixEnd(lo), func(k, v []byte) bool {
		key := string(k[1:])
		if _, staged := ab.pending[key]; staged || !ours(key) {
			return true
		}
		r, err := decodeRecord(key, v)
		if err != nil {
			derr = err
			return false
		}
		if live(r) {
			found = key
			return false
		}
		return true
	})
	if err == nil {
		err = derr
	}
	return found, err
}

// SetKeyspace implements kv.Control: once the change has committed it waits
// (at most controlWait, or the request's deadline) until every member has
// applied it, and names those that have not.
func (e *Engine) SetKeyspace(ctx context.Context, p keyspace.Policy) ([]string, error) {
	return e.control(ctx, command{Type: cmdKeyspaceSet, Keyspace: &p})
}

// DeleteKeyspace implements kv.Control, waiting like SetKeyspace.
func (e *Engine) DeleteKeyspace(ctx context.Context, prefix string) ([]string, error) {
	return e.control(ctx, command{Type: cmdKeyspaceDel, Name: prefix})
}

// control replicates a control change and waits until every member has
// applied it (see awaitApplied).
func (e *Engine) control(ctx context.Context, c command) ([]string, error) {
	res, err := e.propose(ctx, c)
	if err != nil {
		return nil, err
	}
	return e.awaitApplied(ctx, res.Index), nil
}
