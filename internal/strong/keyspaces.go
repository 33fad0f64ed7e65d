package strong

import (
	"encoding/json"
	"fmt"

	"github.com/cairnkv/cairn/internal/store"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// Keyspace policies are control-plane state: set and deleted only through
// the log, stored under 0x06 keys, and held in a keyspace.Table that the
// service looks every key up in. Every replica applies the same changes at
// the same log positions, so every node routes a key the same way once it
// has applied as far. (The API that manages policies comes with the eventual
// keyspaces; until then the table holds the default strong policy for "".)

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

// applyKeyspace sets (p != nil) or deletes the policy of prefix. It runs on
// the apply goroutine only.
func (m *Machine) applyKeyspace(b *store.Batch, prefix string, p *keyspace.Policy) error {
	var next []keyspace.Policy
	found := false
	for _, cur := range m.keyspaces.Policies() {
		if cur.Prefix == prefix {
			found = true
			continue
		}
		next = append(next, cur)
	}
	if p == nil {
		if prefix == "" {
			return fmt.Errorf("%w: the policy of the empty prefix cannot be deleted", kv.ErrInvalidArgument)
		}
		if !found {
			return fmt.Errorf("%w: keyspace %q", kv.ErrNotFound, prefix)
		}
	} else {
		next = append(next, *p)
	}
	if err := m.keyspaces.Set(next); err != nil {
		return fmt.Errorf("%w: %w", kv.ErrInvalidArgument, err)
	}
	if p == nil {
		b.Delete(keyspaceKey(prefix))
		return nil
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("%w: %w", kv.ErrInvalidArgument, err)
	}
	b.Set(keyspaceKey(prefix), raw)
	return nil
}
