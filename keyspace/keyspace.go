// Package keyspace holds keyspace policies: rules attached to key prefixes
// (consistency mode, replication, quorums, TTL default, size limits). The
// longest matching prefix decides; the empty prefix is strong and always
// exists. Policies are replicated state: the strong engine applies every
// change through its log and keeps the Table that kv.Service looks keys up
// in, so every node routes a key alike. Only the strong mode has an engine
// today, and policies have no API yet (both come with the eventual
// keyspaces); kv.Service refuses a key whose policy names a mode no engine
// serves.
package keyspace

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Mode is how a keyspace replicates.
type Mode string

// Modes.
const (
	Strong   Mode = "strong"
	Eventual Mode = "eventual"
)

// ErrInvalidPolicy reports a policy that cannot be used.
var ErrInvalidPolicy = errors.New("keyspace: invalid policy")

// Policy is the rule for one prefix.
type Policy struct {
	Prefix string `json:"prefix" yaml:"prefix"`
	Mode   Mode   `json:"mode" yaml:"mode"`
	// Replicas is a count, or 0 for "all" (eventual mode).
	Replicas      int           `json:"replicas,omitempty" yaml:"replicas,omitempty"`
	WriteQuorum   int           `json:"write_quorum,omitempty" yaml:"write_quorum,omitempty"`
	ReadQuorum    int           `json:"read_quorum,omitempty" yaml:"read_quorum,omitempty"`
	DefaultTTL    time.Duration `json:"default_ttl,omitempty" yaml:"default_ttl,omitempty"`
	MaxValueBytes int64         `json:"max_value_bytes,omitempty" yaml:"max_value_bytes,omitempty"`
}

// Validate checks a policy on its own.
func (p Policy) Validate() error {
	switch p.Mode {
	case Strong, Eventual:
	default:
		return fmt.Errorf("%w: mode %q (want strong or eventual)", ErrInvalidPolicy, p.Mode)
	}
	if p.Replicas < 0 || p.WriteQuorum < 0 || p.ReadQuorum < 0 {
		return fmt.Errorf("%w: negative replica or quorum count", ErrInvalidPolicy)
	}
	if p.Replicas > 0 && (p.WriteQuorum > p.Replicas || p.ReadQuorum > p.Replicas) {
		return fmt.Errorf("%w: quorum larger than replicas", ErrInvalidPolicy)
	}
	if p.DefaultTTL < 0 || p.MaxValueBytes < 0 {
		return fmt.Errorf("%w: negative default_ttl or max_value_bytes", ErrInvalidPolicy)
	}
	return nil
}

// Table maps keys to policies. It is safe for concurrent use.
type Table struct {
	mu       sync.RWMutex
	policies []Policy // sorted by prefix length, longest first
}

// NewTable returns a table holding only the default strong policy for "".
func NewTable() *Table {
	return &Table{policies: []Policy{{Prefix: "", Mode: Strong}}}
}

// Lookup returns the policy of the longest prefix of key.
func (t *Table) Lookup(key string) Policy {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, p := range t.policies {
		if strings.HasPrefix(key, p.Prefix) {
			return p
		}
	}
	return Policy{Prefix: "", Mode: Strong}
}

// Set replaces the table's policies (the default policy is kept unless replaced).
func (t *Table) Set(ps []Policy) error {
	seen := map[string]bool{}
	out := []Policy{}
	for _, p := range ps {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("prefix %q: %w", p.Prefix, err)
		}
		if seen[p.Prefix] {
			return fmt.Errorf("%w: prefix %q defined twice", ErrInvalidPolicy, p.Prefix)
		}
		if p.Prefix == "" && p.Mode != Strong {
			return fmt.Errorf("%w: the empty prefix is always strong", ErrInvalidPolicy)
		}
		seen[p.Prefix] = true
		out = append(out, p)
	}
	if !seen[""] {
		out = append(out, Policy{Prefix: "", Mode: Strong})
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i].Prefix) > len(out[j].Prefix) })
	t.mu.Lock()
	t.policies = out
	t.mu.Unlock()
	return nil
}

// Policies returns a copy of every policy, longest prefix first.
func (t *Table) Policies() []Policy {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return append([]Policy(nil), t.policies...)
}
