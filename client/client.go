// Package client is the Go client of cairn's HTTP API. It fails over between
// endpoints: a request that cannot connect, or gets 503, is tried on the next
// endpoint, starting from the last one that worked.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Errors matched with errors.Is on an *APIError.
var (
	ErrNotFound           = errors.New("client: key not found")
	ErrPreconditionFailed = errors.New("client: precondition failed")
	ErrUnavailable        = errors.New("client: cluster unavailable")
	// ErrUnauthenticated: wrong user name, password or token (401).
	ErrUnauthenticated = errors.New("client: authentication failed")
	// ErrPermissionDenied: the ACL rules do not allow it (403).
	ErrPermissionDenied = errors.New("client: permission denied")
	// ErrConflict: the change contradicts the cluster's state, such as a
	// keyspace policy over keys that exist (409 conflict); nothing changed.
	ErrConflict = errors.New("client: conflict")
	// ErrCompacted: a watch asked for a revision older than the server's
	// history keeps (410 compacted); APIError.OldestRevision says where the
	// history starts.
	ErrCompacted = errors.New("client: revision compacted")
)

// APIError is an error answered by the server.
type APIError struct {
	StatusCode int
	Code       string
	Message    string
	// Revision is the key's current mod revision on a failed precondition.
	Revision int64
	// OldestRevision is the oldest revision a watch may start from, on a
	// 410 compacted answer.
	OldestRevision int64
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s (%d %s)", e.Message, e.StatusCode, e.Code)
}

// Is maps API errors to the package's sentinels.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == "key_not_found"
	case ErrPreconditionFailed:
		return e.StatusCode == http.StatusPreconditionFailed
	case ErrUnavailable:
		return e.StatusCode == http.StatusServiceUnavailable
	case ErrUnauthenticated:
		return e.StatusCode == http.StatusUnauthorized
	case ErrPermissionDenied:
		return e.StatusCode == http.StatusForbidden
	case ErrConflict:
		return e.Code == "conflict"
	case ErrCompacted:
		return e.Code == "compacted"
	}
	return false
}

// Config configures a Client.
type Config struct {
	Endpoints []string
	// Timeout bounds each attempt (default 10s).
	Timeout    time.Duration
	TLS        *tls.Config
	HTTPClient *http.Client
	// User and Password are sent as HTTP Basic credentials; Token, instead,
	// as a bearer token. Without them a client certificate (TLS) or nothing
	// identifies the client.
	User, Password string
	Token          string
}

// Client talks to a cairn cluster.
type Client struct {
	auth      string // Authorization header, if any
	endpoints []string
	hc        *http.Client
	preferred atomic.Int32
}

// New checks the endpoints and returns a client.
func New(c Config) (*Client, error) {
	if len(c.Endpoints) == 0 {
		return nil, errors.New("client: no endpoints")
	}
	var eps []string
	for _, e := range c.Endpoints {
		e = strings.TrimRight(strings.TrimSpace(e), "/")
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("client: endpoint %q is not an http(s) URL", e)
		}
		eps = append(eps, e)
	}
	hc := c.HTTPClient
	if hc == nil {
		if c.Timeout <= 0 {
			c.Timeout = 10 * time.Second
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = c.TLS
		tr.MaxIdleConnsPerHost = 64
		hc = &http.Client{Transport: tr, Timeout: c.Timeout}
	}
	cl := &Client{endpoints: eps, hc: hc}
	switch {
	case c.Token != "" && c.User != "":
		return nil, errors.New("client: give a user or a token, not both")
	case c.Token != "":
		cl.auth = "Bearer " + c.Token
	case c.User != "":
		cl.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(c.User+":"+c.Password))
	}
	return cl, nil
}

// Item is a key with its value and metadata: revisions for a key of a
// strong keyspace; for a key of an eventual keyspace, which has none, the
// timestamp of its version and the node that coordinated it.
type Item struct {
	Key            string
	Value          []byte
	CreateRevision int64
	ModRevision    int64
	Version        int64
	Expires        time.Time
	// Timestamp is the hybrid logical clock stamp of an eventual key's
	// version ("2025-03-01T12:00:00.250Z-00003"; such strings sort as the
	// versions do), and Origin the node that coordinated the write. Both
	// are empty for strong keys.
	Timestamp string
	Origin    string
	// Hash is the SHA-256 of the value, "sha256:<hex>", in a listing asked
	// with ListOptions.Hashes (also when KeysOnly leaves the value out).
	Hash string
	// Source is "backup" when the key was read from its keyspace's backup
	// mirror because its replicas could not answer (FallbackBackup, or the
	// keyspace's read_fallback policy): the value may be stale.
	Source string
}

// Eventual reports whether the item is a key of an eventual keyspace.
func (it *Item) Eventual() bool { return it != nil && it.Timestamp != "" }

type wireItem struct {
	Key            string  `json:"key"`
	Value          *string `json:"value,omitempty"`
	CreateRevision int64   `json:"create_revision"`
	ModRevision    int64   `json:"mod_revision"`
	Version        int64   `json:"version"`
	Expires        string  `json:"expires,omitempty"`
	Timestamp      string  `json:"timestamp,omitempty"`
	Origin         string  `json:"origin,omitempty"`
	Hash           string  `json:"hash,omitempty"`
}

func (w *wireItem) item() (Item, error) {
	it := Item{Key: w.Key, CreateRevision: w.CreateRevision, ModRevision: w.ModRevision, Version: w.Version,
		Timestamp: w.Timestamp, Origin: w.Origin, Hash: w.Hash}
	if w.Value != nil {
		v, err := base64.StdEncoding.DecodeString(*w.Value)
		if err != nil {
			return it, fmt.Errorf("client: bad value for %q: %w", w.Key, err)
		}
		it.Value = v
	}
	if w.Expires != "" {
		t, err := time.Parse(time.RFC3339Nano, w.Expires)
		if err != nil {
			return it, fmt.Errorf("client: bad expiry for %q: %w", w.Key, err)
		}
		it.Expires = t
	}
	return it, nil
}

// ReadOption changes a read.
type ReadOption func(url.Values)

// Serializable reads from the contacted node's replica without a leader check.
func Serializable() ReadOption { return func(q url.Values) { q.Set("consistency", "serializable") } }

// Local reads the contacted node's own copy only (consistency=local): for
// an eventual key, whether or not the node is one of its replicas; for a
// strong key, as Serializable. The answer may be out of date.
func Local() ReadOption { return func(q url.Values) { q.Set("consistency", "local") } }

// Lease reads linearizably through the leader's lease (consistency=lease)
// instead of the read index: no round trip to a quorum while the leader
// holds a lease, under the cluster's clock-drift bound (docs/OPERATIONS.md,
// "Lease reads"). Strong keys only; a leader without a lease falls back to
// the read index.
func Lease() ReadOption { return func(q url.Values) { q.Set("consistency", "lease") } }

// ReadIndex reads linearizably through the read index (consistency=read-index)
// even where the node's --read-mode is lease.
func ReadIndex() ReadOption { return func(q url.Values) { q.Set("consistency", "read-index") } }

// ReadQuorum asks n replicas of an eventual key instead of its keyspace's
// read_quorum (?r=); strong keys ignore it.
func ReadQuorum(n int) ReadOption { return func(q url.Values) { q.Set("r", strconv.Itoa(n)) } }

// FallbackBackup reads a key its replicas cannot answer from its
// keyspace's backup mirror (?fallback=backup); the item says so
// (Item.Source).
func FallbackBackup() ReadOption { return func(q url.Values) { q.Set("fallback", "backup") } }

func keyPath(key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return "/v1/kv/" + strings.Join(parts, "/")
}

type request struct {
	method string
	path   string
	query  url.Values
	body   []byte
	header http.Header
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends r to the endpoints in turn until one answers with something other
// than 503; connection errors also move on.
func (c *Client) do(ctx context.Context, r request) (*response, error) {
	var lastErr error
	start := int(c.preferred.Load())
	for i := 0; i < len(c.endpoints); i++ {
		idx := (start + i) % len(c.endpoints)
		u := c.endpoints[idx] + r.path
		if len(r.query) > 0 {
			u += "?" + r.query.Encode()
		}
		req, err := http.NewRequestWithContext(ctx, r.method, u, bytes.NewReader(r.body))
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		for k, vs := range r.header {
			req.Header[k] = vs
		}
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("client: %w", ctx.Err())
			}
			lastErr = fmt.Errorf("client: %s: %w", c.endpoints[idx], err)
			continue
		}
		body, err := readBody(resp)
		resp.Body.Close()
		if err != nil {
			lastErr = fmt.Errorf("client: %s: %w", c.endpoints[idx], err)
			continue
		}
		out := &response{status: resp.StatusCode, header: resp.Header, body: body}
		if resp.StatusCode == http.StatusServiceUnavailable {
			lastErr = apiError(out)
			continue
		}
		c.preferred.Store(int32(idx))
		return out, nil
	}
	return nil, fmt.Errorf("client: every endpoint failed: %w", lastErr)
}

// readBody reads an answer's body: into one buffer of its Content-Length
// when the server sent one (a value of 50 MiB costs 50 MiB, not the sum of a
// buffer grown by doubling), else as it comes.
func readBody(resp *http.Response) ([]byte, error) {
	if n := resp.ContentLength; n >= 0 && n <= maxPresizedBody {
		b := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(resp.Body)
}

// maxPresizedBody bounds the buffer readBody allocates up front: the
// largest value a server may be configured to hold (64 MiB) plus room.
const maxPresizedBody = 65 << 20

func apiError(r *response) error {
	var body struct {
		Error struct {
			Code           string `json:"code"`
			Message        string `json:"message"`
			Revision       int64  `json:"revision"`
			OldestRevision int64  `json:"oldest_revision"`
		} `json:"error"`
	}
	e := &APIError{StatusCode: r.status}
	if json.Unmarshal(r.body, &body) == nil && body.Error.Code != "" {
		e.Code, e.Message, e.Revision = body.Error.Code, body.Error.Message, body.Error.Revision
		e.OldestRevision = body.Error.OldestRevision
	} else {
		e.Code, e.Message = "http_"+strconv.Itoa(r.status), strings.TrimSpace(string(r.body))
	}
	return e
}

// call does r and decodes a 2xx JSON answer into out (when not nil).
func (c *Client) call(ctx context.Context, r request, out any) (*response, error) {
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	if resp.status/100 != 2 {
		return resp, apiError(resp)
	}
	if out != nil {
		if err := json.Unmarshal(resp.body, out); err != nil {
			return resp, fmt.Errorf("client: decoding the answer: %w", err)
		}
	}
	return resp, nil
}

// Get reads one key.
func (c *Client) Get(ctx context.Context, key string, opts ...ReadOption) (*Item, error) {
	q := url.Values{}
	for _, o := range opts {
		o(q)
	}
	resp, err := c.call(ctx, request{method: http.MethodGet, path: keyPath(key), query: q}, nil)
	if err != nil {
		return nil, err
	}
	it := &Item{Key: key, Value: resp.body}
	it.ModRevision, _ = strconv.ParseInt(resp.header.Get("X-Cairn-Revision"), 10, 64)
	it.CreateRevision, _ = strconv.ParseInt(resp.header.Get("X-Cairn-Create-Revision"), 10, 64)
	it.Version, _ = strconv.ParseInt(resp.header.Get("X-Cairn-Version"), 10, 64)
	it.Timestamp, it.Origin = resp.header.Get("X-Cairn-Timestamp"), resp.header.Get("X-Cairn-Origin")
	it.Source = resp.header.Get("X-Cairn-Source")
	if e := resp.header.Get("X-Cairn-Expires"); e != "" {
		it.Expires, _ = time.Parse(time.RFC3339Nano, e)
	}
	return it, nil
}

// ListOptions shape a listing.
type ListOptions struct {
	After        string
	Limit        int
	KeysOnly     bool
	Serializable bool
	// Local and ReadQuorum are as the read options Local and ReadQuorum.
	Local      bool
	ReadQuorum int
	// Hashes asks for each value's SHA-256 (Item.Hash); with KeysOnly the
	// hashes come without the values.
	Hashes bool
}

// ListResult is one page of keys.
type ListResult struct {
	Revision int64
	Items    []Item
	More     bool
}

// List returns keys under prefix in order.
func (c *Client) List(ctx context.Context, prefix string, o ListOptions) (*ListResult, error) {
	q := url.Values{"list": {"true"}}
	if o.After != "" {
		q.Set("after", o.After)
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.KeysOnly {
		q.Set("keys_only", "true")
	}
	if o.Hashes {
		q.Set("hashes", "true")
	}
	switch {
	case o.Local:
		q.Set("consistency", "local")
	case o.Serializable:
		q.Set("consistency", "serializable")
	}
	if o.ReadQuorum > 0 {
		q.Set("r", strconv.Itoa(o.ReadQuorum))
	}
	var wire struct {
		Revision int64      `json:"revision"`
		Items    []wireItem `json:"items"`
		More     bool       `json:"more"`
	}
	if _, err := c.call(ctx, request{method: http.MethodGet, path: keyPath(prefix), query: q}, &wire); err != nil {
		return nil, err
	}
	res := &ListResult{Revision: wire.Revision, More: wire.More, Items: make([]Item, 0, len(wire.Items))}
	for i := range wire.Items {
		it, err := wire.Items[i].item()
		if err != nil {
			return nil, err
		}
		res.Items = append(res.Items, it)
	}
	return res, nil
}

// PutOptions change a put.
type PutOptions struct {
	TTL time.Duration
	// IfRevision makes the put succeed only if the key's mod revision is this.
	IfRevision *int64
	// IfAbsent makes the put succeed only if the key does not exist.
	IfAbsent bool
	// WriteQuorum waits for this many replicas of an eventual key instead
	// of its keyspace's write_quorum (?w=); strong keys ignore it.
	WriteQuorum int
}

// WriteResult is what a write answered: for a strong key the revision
// after it; for an eventual key the timestamp of the version it wrote and
// how many of the key's Replicas had made it durable (Acks) when it was
// answered. Deleted is how many keys a delete removed.
type WriteResult struct {
	Revision  int64  `json:"revision"`
	Deleted   int64  `json:"deleted"`
	Timestamp string `json:"timestamp"`
	Acks      int    `json:"acks"`
	Replicas  int    `json:"replicas"`
}

// Eventual reports whether the write was to an eventual keyspace.
func (w *WriteResult) Eventual() bool { return w != nil && w.Timestamp != "" }

// Put writes a value and returns the new revision (0 for a key of an
// eventual keyspace: see PutWithResult).
func (c *Client) Put(ctx context.Context, key string, value []byte, o PutOptions) (int64, error) {
	res, err := c.PutWithResult(ctx, key, value, o)
	if err != nil {
		return 0, err
	}
	return res.Revision, nil
}

// PutWithResult writes a value and returns the whole answer.
func (c *Client) PutWithResult(ctx context.Context, key string, value []byte, o PutOptions) (*WriteResult, error) {
	q := url.Values{}
	if o.TTL > 0 {
		q.Set("ttl", o.TTL.String())
	}
	if o.WriteQuorum > 0 {
		q.Set("w", strconv.Itoa(o.WriteQuorum))
	}
	h := http.Header{}
	if o.IfRevision != nil {
		h.Set("If-Match", `"`+strconv.FormatInt(*o.IfRevision, 10)+`"`)
	}
	if o.IfAbsent {
		h.Set("If-None-Match", "*")
	}
	var out WriteResult
	if _, err := c.call(ctx, request{method: http.MethodPut, path: keyPath(key), query: q, body: value, header: h}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteOptions change a delete.
type DeleteOptions struct {
	Prefix     bool
	IfRevision *int64
	// WriteQuorum is as PutOptions.WriteQuorum.
	WriteQuorum int
}

// Delete removes a key (or a prefix) and returns how many keys went and the
// revision (0 for an eventual keyspace: see DeleteWithResult).
func (c *Client) Delete(ctx context.Context, key string, o DeleteOptions) (deleted, revision int64, err error) {
	res, err := c.DeleteWithResult(ctx, key, o)
	if err != nil {
		return 0, 0, err
	}
	return res.Deleted, res.Revision, nil
}

// DeleteWithResult removes a key (or a prefix) and returns the whole answer.
func (c *Client) DeleteWithResult(ctx context.Context, key string, o DeleteOptions) (*WriteResult, error) {
	q := url.Values{}
	if o.Prefix {
		q.Set("prefix", "true")
	}
	if o.WriteQuorum > 0 {
		q.Set("w", strconv.Itoa(o.WriteQuorum))
	}
	h := http.Header{}
	if o.IfRevision != nil {
		h.Set("If-Match", `"`+strconv.FormatInt(*o.IfRevision, 10)+`"`)
	}
	var out WriteResult
	if _, err := c.call(ctx, request{method: http.MethodDelete, path: keyPath(key), query: q, header: h}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Patch applies a JSON merge patch and returns the merged document.
func (c *Client) Patch(ctx context.Context, key string, patch []byte) ([]byte, error) {
	h := http.Header{"Content-Type": {"application/merge-patch+json"}}
	resp, err := c.call(ctx, request{method: http.MethodPatch, path: keyPath(key), body: patch, header: h}, nil)
	if err != nil {
		return nil, err
	}
	return resp.body, nil
}

// TxnResponse is the answer to a transaction; Results keep the wire form.
// A transaction of eventual keys has no revision: Timestamp, Acks and
// Replicas are as in WriteResult.
type TxnResponse struct {
	Succeeded bool              `json:"succeeded"`
	Revision  int64             `json:"revision"`
	Timestamp string            `json:"timestamp,omitempty"`
	Acks      int               `json:"acks,omitempty"`
	Replicas  int               `json:"replicas,omitempty"`
	Results   []json.RawMessage `json:"results"`
}

// Txn sends a transaction in the wire form documented in docs/API.md.
func (c *Client) Txn(ctx context.Context, body json.RawMessage) (*TxnResponse, error) {
	var out TxnResponse
	if _, err := c.call(ctx, request{method: http.MethodPost, path: "/v1/txn", body: body}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Member is one cluster member.
type Member struct {
	Name      string `json:"name"`
	PeerAddr  string `json:"peer_addr"`
	ClientURL string `json:"client_url,omitempty"`
	RESPAddr  string `json:"resp_addr,omitempty"`
	Voter     bool   `json:"voter"`
	Leader    bool   `json:"leader"`
}

// MemberSpec describes a member to add.
type MemberSpec struct {
	Name      string `json:"name"`
	PeerAddr  string `json:"peer_addr"`
	ClientURL string `json:"client_url,omitempty"`
	RESPAddr  string `json:"resp_addr,omitempty"`
	NonVoter  bool   `json:"non_voter,omitempty"`
}

func (c *Client) members(ctx context.Context, r request) ([]Member, error) {
	var out struct {
		Members []Member `json:"members"`
	}
	_, err := c.call(ctx, r, &out)
	return out.Members, err
}

// Members lists the cluster's members.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	return c.members(ctx, request{method: http.MethodGet, path: "/v1/cluster/members"})
}

// AddMember adds a member and returns the new list.
func (c *Client) AddMember(ctx context.Context, m MemberSpec) ([]Member, error) {
	b, _ := json.Marshal(m)
	return c.members(ctx, request{method: http.MethodPost, path: "/v1/cluster/members", body: b})
}

// RemoveMember removes a member.
func (c *Client) RemoveMember(ctx context.Context, name string) ([]Member, error) {
	return c.members(ctx, request{method: http.MethodDelete, path: "/v1/cluster/members/" + url.PathEscape(name)})
}

// PromoteMember makes a non-voter a voter.
func (c *Client) PromoteMember(ctx context.Context, name string) ([]Member, error) {
	return c.members(ctx, request{method: http.MethodPost, path: "/v1/cluster/members/" + url.PathEscape(name) + "/promote"})
}

// TransferLeader moves leadership (to a named member, or any when empty) and
// returns the new leader's name.
func (c *Client) TransferLeader(ctx context.Context, to string) (string, error) {
	b, _ := json.Marshal(map[string]string{"to": to})
	var out struct {
		Leader string `json:"leader"`
	}
	_, err := c.call(ctx, request{method: http.MethodPost, path: "/v1/cluster/leader/transfer", body: b}, &out)
	return out.Leader, err
}

// Status is a node's view of the cluster.
type Status struct {
	Name         string `json:"name"`
	State        string `json:"state"`
	Leader       string `json:"leader"`
	LeaderAddr   string `json:"leader_peer_addr,omitempty"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	LastIndex    uint64 `json:"last_index"`
	Revision     int64  `json:"revision"`
	// ClusterID names the cluster ("" until the node knows it).
	ClusterID     string `json:"cluster_id,omitempty"`
	Members       int    `json:"members"`
	LastContactMs int64  `json:"last_contact_ms"`
	// Health is each member's health as this node's failure detector sees
	// it ("self", "healthy", "damaged", "validating"); absent on a node
	// without the eventual engine.
	Health map[string]string `json:"health,omitempty"`
	// Mirrors are the node's keyspace mirrors to buckets (docs/BACKUP.md).
	Mirrors []MirrorStatus `json:"mirrors,omitempty"`
}

// MirrorStatus is what one keyspace mirror did, as one node sees it.
type MirrorStatus struct {
	Prefix string `json:"prefix"`
	Bucket string `json:"bucket"`
	Mode   string `json:"mode"`
	// Active: this node copies the keyspace's writes (the leader for a
	// strong keyspace; every node its own eventual keys).
	Active bool `json:"active"`
	// Cursor and Behind: a strong keyspace is mirrored up to revision
	// Cursor, Behind revisions behind the cluster.
	Cursor int64 `json:"cursor,omitempty"`
	Behind int64 `json:"behind,omitempty"`
	// Outbox is the keys this node's eventual outbox holds, OutboxOverflow
	// how many it could not queue since its last reconcile.
	Outbox         int64      `json:"outbox,omitempty"`
	OutboxOverflow uint64     `json:"outbox_overflow,omitempty"`
	Puts           int64      `json:"puts"`
	Deletes        int64      `json:"deletes"`
	LastCopy       *time.Time `json:"last_copy,omitempty"`
	LastError      string     `json:"last_error,omitempty"`
	LastErrorAt    *time.Time `json:"last_error_at,omitempty"`
	Reconcile      *struct {
		At      time.Time `json:"at"`
		Keys    int       `json:"keys"`
		Objects int       `json:"objects"`
		Put     int       `json:"put"`
		Deleted int       `json:"deleted"`
		Foreign int       `json:"foreign"`
		Seconds float64   `json:"seconds"`
	} `json:"reconcile,omitempty"`
}

// Status asks the first reachable endpoint for its status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var out Status
	if _, err := c.call(ctx, request{method: http.MethodGet, path: "/v1/cluster/status"}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Ring is the hash ring that places eventual keys, as a node sees it, and
// for a key where that key lives.
type Ring struct {
	Vnodes  int          `json:"vnodes"`
	Members []RingMember `json:"members"`
	// For a key: its hash, its keyspace and mode, and for an eventual key
	// the preference list (the first Replicas members clockwise from the
	// hash, which hold its copies).
	Key        string   `json:"key,omitempty"`
	Hash       string   `json:"hash,omitempty"`
	Keyspace   *string  `json:"keyspace,omitempty"`
	Mode       string   `json:"mode,omitempty"`
	Replicas   int      `json:"replicas,omitempty"`
	Preference []string `json:"preference,omitempty"`
}

// RingMember is one member on the ring: its health as the node asked sees
// it, and the fraction of the ring whose first owner it is.
type RingMember struct {
	Name   string  `json:"name"`
	Health string  `json:"health"`
	Share  float64 `json:"share"`
}

// Ring describes the ring (key "") or where key lives (GET /v1/ring).
func (c *Client) Ring(ctx context.Context, key string) (*Ring, error) {
	q := url.Values{}
	if key != "" {
		q.Set("key", key)
	}
	var out Ring
	if _, err := c.call(ctx, request{method: http.MethodGet, path: "/v1/ring", query: q}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
