// Package keyspace holds keyspace policies: rules attached to key prefixes
// (consistency mode, replication, quorums, TTL default, size limits). The
// longest matching prefix decides; the empty prefix is strong and always
// exists. Policies are replicated state: the strong engine applies every
// change through its log and keeps the Table that kv.Service looks keys up
// in, so every node routes a key alike. kv.Service manages them at run time
// (admin only) and refuses a policy, or a key, whose mode no engine of this
// version serves.
package keyspace

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
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

// Policy is the rule for one prefix. Its JSON form (the HTTP API's, and the
// log's) is policyJSON, and its YAML form (the config file's) has the same
// fields: replicas is a number or "all", default_ttl a Go duration string
// ("60s").
type Policy struct {
	Prefix string
	Mode   Mode
	// Replicas is a count, or 0 for "all" (eventual mode).
	Replicas      int
	WriteQuorum   int
	ReadQuorum    int
	DefaultTTL    time.Duration
	MaxValueBytes int64
	// SloppyQuorum lets an eventual write use the next healthy node on the
	// ring for an unreachable owner (hinted handoff). When a policy is read
	// from JSON or YAML it defaults to true for eventual policies; strong
	// policies ignore it.
	SloppyQuorum bool
	// Materialize, when set, has every node write the keyspace's keys as
	// files into a directory (a node's own setting overrides it there).
	Materialize *Materialize
	// Backup, when set, is the bucket URL (s3://bucket/prefix?…) the
	// keyspace is mirrored to: every put and delete under the prefix
	// becomes an object write or delete there (package backup/mirror).
	Backup string
	// ReadFallback "backup" has a read that the keyspace's replicas
	// cannot answer served from the Backup mirror, marked as such; ""
	// never does (a request can still ask for it).
	ReadFallback string
}

// ReadFallbackBackup is Policy.ReadFallback for reads from the mirror.
const ReadFallbackBackup = "backup"

// policyJSON is Policy on the wire.
type policyJSON struct {
	Prefix        string          `json:"prefix"`
	Mode          Mode            `json:"mode"`
	Replicas      json.RawMessage `json:"replicas,omitempty"`
	WriteQuorum   int             `json:"write_quorum,omitempty"`
	ReadQuorum    int             `json:"read_quorum,omitempty"`
	DefaultTTL    string          `json:"default_ttl,omitempty"`
	MaxValueBytes int64           `json:"max_value_bytes,omitempty"`
	SloppyQuorum  *bool           `json:"sloppy_quorum,omitempty"`
	Materialize   json.RawMessage `json:"materialize,omitempty"`
	Backup        string          `json:"backup,omitempty"`
	ReadFallback  string          `json:"read_fallback,omitempty"`
}

// MarshalJSON writes replicas 0 of an eventual policy as "all", the TTL as
// a duration string, and sloppy_quorum for eventual policies only.
func (p Policy) MarshalJSON() ([]byte, error) {
	j := policyJSON{Prefix: p.Prefix, Mode: p.Mode, WriteQuorum: p.WriteQuorum, ReadQuorum: p.ReadQuorum, MaxValueBytes: p.MaxValueBytes,
		Backup: p.Backup, ReadFallback: p.ReadFallback}
	switch {
	case p.Replicas > 0:
		j.Replicas = json.RawMessage(fmt.Sprint(p.Replicas))
	case p.Mode == Eventual:
		j.Replicas = json.RawMessage(`"all"`)
	}
	if p.DefaultTTL != 0 {
		j.DefaultTTL = p.DefaultTTL.String()
	}
	if p.Mode == Eventual {
		j.SloppyQuorum = &p.SloppyQuorum
	}
	if p.Materialize != nil {
		b, err := json.Marshal(p.Materialize)
		if err != nil {
			return nil, err
		}
		j.Materialize = b
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes: replicas is a non-negative
// number or "all"; sloppy_quorum defaults to true for an eventual policy.
// It ignores fields it does not know, because it also reads the log and the
// state database, where a newer version's policy must still apply alike on
// every replica; what people send goes through ParseJSON.
func (p *Policy) UnmarshalJSON(b []byte) error {
	return p.decodeJSON(b, false)
}

// ParseJSON reads a policy written by a person (an API request): like
// UnmarshalJSON, but a field it does not know is an error, so that a
// misspelt field never silently falls back to a default.
func ParseJSON(b []byte) (Policy, error) {
	var p Policy
	err := p.decodeJSON(b, true)
	return p, err
}

func (p *Policy) decodeJSON(b []byte, strict bool) error {
	var j policyJSON
	d := json.NewDecoder(bytes.NewReader(b))
	if strict {
		d.DisallowUnknownFields()
	}
	if err := d.Decode(&j); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
	}
	w := wirePolicy{Prefix: j.Prefix, Mode: j.Mode, WriteQuorum: j.WriteQuorum, ReadQuorum: j.ReadQuorum,
		DefaultTTL: j.DefaultTTL, MaxValueBytes: j.MaxValueBytes, SloppyQuorum: j.SloppyQuorum, Backup: j.Backup, ReadFallback: j.ReadFallback}
	if len(j.Replicas) > 0 && string(j.Replicas) != "null" {
		var all string
		if json.Unmarshal(j.Replicas, &all) == nil {
			if all != "all" {
				return fmt.Errorf("%w: replicas %q (want a number or \"all\")", ErrInvalidPolicy, all)
			}
			w.Replicas = all
		} else {
			w.Replicas = string(j.Replicas)
		}
	}
	if len(j.Materialize) > 0 && string(j.Materialize) != "null" {
		m, err := decodeMaterialize(j.Materialize, strict)
		if err != nil {
			return err
		}
		w.Materialize = &m
	}
	out, err := w.policy()
	if err != nil {
		return err
	}
	*p = out
	return nil
}

// UnmarshalYAML reads a policy of the config file (keyspaces:) with the
// same fields and defaults as the JSON form.
func (p *Policy) UnmarshalYAML(unmarshal func(any) error) error {
	var w wirePolicy
	if err := unmarshal(&w); err != nil {
		return err
	}
	out, err := w.policy()
	if err != nil {
		return err
	}
	*p = out
	return nil
}

// wirePolicy is a policy as written by people: replicas as text (a number
// or "all"), the TTL as a duration string.
type wirePolicy struct {
	Prefix        string       `yaml:"prefix"`
	Mode          Mode         `yaml:"mode"`
	Replicas      string       `yaml:"replicas"`
	WriteQuorum   int          `yaml:"write_quorum"`
	ReadQuorum    int          `yaml:"read_quorum"`
	DefaultTTL    string       `yaml:"default_ttl"`
	MaxValueBytes int64        `yaml:"max_value_bytes"`
	SloppyQuorum  *bool        `yaml:"sloppy_quorum"`
	Materialize   *Materialize `yaml:"materialize"`
	Backup        string       `yaml:"backup"`
	ReadFallback  string       `yaml:"read_fallback"`
}

func (w wirePolicy) policy() (Policy, error) {
	out := Policy{Prefix: w.Prefix, Mode: w.Mode, WriteQuorum: w.WriteQuorum, ReadQuorum: w.ReadQuorum, MaxValueBytes: w.MaxValueBytes,
		Materialize: w.Materialize, Backup: w.Backup, ReadFallback: w.ReadFallback}
	if w.Replicas != "" && w.Replicas != "all" {
		n, err := strconv.Atoi(w.Replicas)
		if err != nil {
			return Policy{}, fmt.Errorf("%w: replicas %s (want a number or \"all\")", ErrInvalidPolicy, w.Replicas)
		}
		out.Replicas = n
	}
	if w.DefaultTTL != "" {
		ttl, err := time.ParseDuration(w.DefaultTTL)
		if err != nil {
			return Policy{}, fmt.Errorf("%w: default_ttl %q (want a duration such as \"60s\")", ErrInvalidPolicy, w.DefaultTTL)
		}
		out.DefaultTTL = ttl
	}
	switch {
	case w.SloppyQuorum != nil:
		out.SloppyQuorum = *w.SloppyQuorum
	case out.Mode == Eventual:
		out.SloppyQuorum = true
	}
	return out, nil
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
	if p.Backup != "" {
		u, err := url.Parse(p.Backup)
		if err != nil {
			return fmt.Errorf("%w: backup: %w", ErrInvalidPolicy, err)
		}
		if u.Scheme != "s3" || u.Host == "" {
			return fmt.Errorf("%w: backup %q: want s3://bucket/prefix?endpoint=…", ErrInvalidPolicy, u.Redacted())
		}
		if u.User != nil {
			return fmt.Errorf("%w: backup %q: credentials do not go in the URL (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY on every node, or credentials_file=)", ErrInvalidPolicy, u.Redacted())
		}
	}
	switch p.ReadFallback {
	case "":
	case ReadFallbackBackup:
		if p.Backup == "" {
			return fmt.Errorf("%w: read_fallback %q needs a backup mirror (backup: s3://…)", ErrInvalidPolicy, p.ReadFallback)
		}
	default:
		return fmt.Errorf("%w: read_fallback %q (want \"backup\" or nothing)", ErrInvalidPolicy, p.ReadFallback)
	}
	if m := p.Materialize; m != nil {
		if m.Prefix != "" && m.Prefix != p.Prefix {
			return fmt.Errorf("%w: materialize: prefix %q differs from the policy's %q", ErrInvalidPolicy, m.Prefix, p.Prefix)
		}
		if err := m.Validate(); err != nil {
			return err
		}
		if !strings.HasPrefix(p.Prefix, m.StripPrefix) {
			return fmt.Errorf("%w: materialize: strip_prefix %q is not a prefix of %q", ErrInvalidPolicy, m.StripPrefix, p.Prefix)
		}
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
