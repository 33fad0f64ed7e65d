package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Keyspace is a keyspace policy as the HTTP API shows it (docs/API.md,
// "Keyspaces"). Empty fields are the server's defaults.
type Keyspace struct {
	Prefix        string   `json:"prefix"`
	Mode          string   `json:"mode"`
	Replicas      Replicas `json:"replicas,omitempty"`
	WriteQuorum   int      `json:"write_quorum,omitempty"`
	ReadQuorum    int      `json:"read_quorum,omitempty"`
	DefaultTTL    string   `json:"default_ttl,omitempty"`
	MaxValueBytes int64    `json:"max_value_bytes,omitempty"`
	SloppyQuorum  *bool    `json:"sloppy_quorum,omitempty"`
	// Materialize has every node write the keyspace's keys as files
	// (docs/FILES.md).
	Materialize *Materialize `json:"materialize,omitempty"`
	// Backup is the bucket URL the keyspace is mirrored to, and
	// ReadFallback "backup" serves reads its replicas cannot answer from
	// there (docs/BACKUP.md).
	Backup       string `json:"backup,omitempty"`
	ReadFallback string `json:"read_fallback,omitempty"`
}

// Materialize is a keyspace's materialize setting: modes as octal strings
// ("0644"), durations as Go durations ("2s"), OnChange the hook's argv.
type Materialize struct {
	Dir         string   `json:"dir"`
	FileMode    string   `json:"file_mode,omitempty"`
	DirMode     string   `json:"dir_mode,omitempty"`
	StripPrefix string   `json:"strip_prefix,omitempty"`
	OnChange    []string `json:"on_change,omitempty"`
	Debounce    string   `json:"debounce,omitempty"`
	HookTimeout string   `json:"hook_timeout,omitempty"`
}

// Replicas is a replica count ("3") or "all"; empty means the default.
type Replicas string

// MarshalJSON writes a count as a number and "all" as a string.
func (r Replicas) MarshalJSON() ([]byte, error) {
	if r == "all" {
		return []byte(`"all"`), nil
	}
	n, err := strconv.Atoi(string(r))
	if err != nil || n < 0 {
		return nil, fmt.Errorf("client: replicas %q: want a number or \"all\"", string(r))
	}
	return []byte(strconv.Itoa(n)), nil
}

// UnmarshalJSON reads a number or "all".
func (r *Replicas) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*r = Replicas(s)
		return nil
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("client: replicas %s: %w", b, err)
	}
	*r = Replicas(strconv.Itoa(n))
	return nil
}

// KeyspaceChange is the answer to a change: the policy, and the members
// that had not applied the change yet when the server stopped waiting.
type KeyspaceChange struct {
	Keyspace
	Pending []string `json:"pending"`
}

func keyspacePath(prefix string) string {
	parts := strings.Split(prefix, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return "/v1/keyspaces/" + strings.Join(parts, "/")
}

// Keyspaces lists every keyspace policy, the empty prefix's first.
func (c *Client) Keyspaces(ctx context.Context) ([]Keyspace, error) {
	var out struct {
		Keyspaces []Keyspace `json:"keyspaces"`
	}
	_, err := c.call(ctx, request{method: http.MethodGet, path: "/v1/keyspaces"}, &out)
	return out.Keyspaces, err
}

// Keyspace returns the policy of exactly prefix ("" is the default one).
func (c *Client) Keyspace(ctx context.Context, prefix string) (*Keyspace, error) {
	var out Keyspace
	if _, err := c.call(ctx, request{method: http.MethodGet, path: keyspacePath(prefix)}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PutKeyspace creates or changes the policy of k.Prefix.
func (c *Client) PutKeyspace(ctx context.Context, k Keyspace) (*KeyspaceChange, error) {
	b, err := json.Marshal(k)
	if err != nil {
		return nil, err
	}
	var out KeyspaceChange
	if _, err := c.call(ctx, request{method: http.MethodPut, path: keyspacePath(k.Prefix), body: b}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteKeyspace removes the policy of prefix and returns it.
func (c *Client) DeleteKeyspace(ctx context.Context, prefix string) (*KeyspaceChange, error) {
	var out KeyspaceChange
	if _, err := c.call(ctx, request{method: http.MethodDelete, path: keyspacePath(prefix)}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
