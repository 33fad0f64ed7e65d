package kv

import (
	"fmt"
	"time"
)

// MaxKeyBytes is the longest key cairn accepts.
const MaxKeyBytes = 4096

// Record is one key's value and metadata as the service returns it.
type Record struct {
	Key            string
	Value          []byte
	CreateRevision int64
	ModRevision    int64
	Version        int64
	// Expires is the unix time in nanoseconds at which the key expires; 0 means never.
	Expires int64
	// Timestamp is, for a key of an eventual keyspace, the hybrid logical
	// clock stamp of its version in its text form
	// ("2025-03-01T12:00:00.250Z-00003"), and Origin the node that
	// coordinated it; versions are ordered by (Timestamp, Origin). Both are
	// empty for strong keys, which have revisions instead.
	Timestamp string
	Origin    string
	// Acks and Replicas are set on the record an eventual write returns:
	// how many of the key's Replicas had made the write durable when the
	// write was answered.
	Acks, Replicas int
	// Source is SourceBackup for a record read from the keyspace's backup
	// mirror because its replicas could not answer (ReadOptions.Fallback):
	// it may be stale, and only its value, revision or timestamp and
	// expiry are known. "" for every other read.
	Source string
}

// SourceBackup is Record.Source of a record served by the backup mirror.
const SourceBackup = "backup"

// Eventual reports whether r is a key of an eventual keyspace.
func (r *Record) Eventual() bool { return r != nil && r.Timestamp != "" }

// ExpiresAt returns the expiry as a time, or the zero time when the key has no TTL.
func (r *Record) ExpiresAt() time.Time {
	if r == nil || r.Expires == 0 {
		return time.Time{}
	}
	return time.Unix(0, r.Expires).UTC()
}

// OpType names one operation inside a transaction.
type OpType string

// Operation types.
const (
	OpGet          OpType = "get"
	OpPut          OpType = "put"
	OpDelete       OpType = "delete"
	OpDeletePrefix OpType = "delete_prefix"
	OpPatch        OpType = "patch"
	// OpIncr adds the decimal integer in Value to the key's integer value
	// (a missing key counts as 0), keeping its TTL.
	OpIncr OpType = "incr"
	// OpIncrFloat is OpIncr for decimal floating-point numbers.
	OpIncrFloat OpType = "incr_float"
	// OpAppend appends Value to the key's value (creating it), keeping its TTL.
	OpAppend OpType = "append"
	// OpExpire sets the expiry of an existing key from TTL or ExpiresAt, or
	// removes it when both are zero (Redis PERSIST). An expiry that is already
	// past deletes the key. The result's Record is nil when the key is absent.
	OpExpire OpType = "expire"
	// OpRename moves the key's value and TTL to the key named in Value,
	// replacing it. A missing source is ErrKeyNotFound.
	OpRename OpType = "rename"
)

// Op is one operation of a transaction.
type Op struct {
	Type  OpType        `json:"op"`
	Key   string        `json:"key"`
	Value []byte        `json:"value,omitempty"`
	TTL   time.Duration `json:"ttl,omitempty"`
	// ExpiresAt is an absolute expiry in unix nanoseconds (Redis EXAT/PXAT);
	// it wins over TTL. An expiry already past makes a put delete the key.
	ExpiresAt int64 `json:"expires_at,omitempty"`
	// KeepTTL keeps the key's current expiry on put (Redis SET KEEPTTL).
	KeepTTL bool `json:"keep_ttl,omitempty"`
	// ReturnPrev asks for the record as it was before the op in OpResult.Prev.
	ReturnPrev bool `json:"return_prev,omitempty"`
}

// CompareTarget names what a Compare looks at.
type CompareTarget string

// Compare targets.
const (
	TargetValue          CompareTarget = "value"
	TargetVersion        CompareTarget = "version"
	TargetCreateRevision CompareTarget = "create_revision"
	TargetModRevision    CompareTarget = "mod_revision"
	TargetExists         CompareTarget = "exists"
)

// Compare is one condition of a transaction. Value is used for the value target,
// Number for revisions and versions, Exists for existence. A missing key has
// version and revisions 0 and no value (it compares as an empty value that is
// unequal to every value).
type Compare struct {
	Key    string        `json:"key"`
	Target CompareTarget `json:"target"`
	// Op is one of "=", "!=", "<", ">".
	Op     string `json:"op"`
	Value  []byte `json:"value,omitempty"`
	Number int64  `json:"number,omitempty"`
	Exists bool   `json:"exists,omitempty"`
}

// Txn is an atomic multi-key transaction: when every Compare holds, Success runs,
// otherwise Failure runs. Every write inside bumps the revision once.
type Txn struct {
	Compare []Compare `json:"compare,omitempty"`
	Success []Op      `json:"success,omitempty"`
	Failure []Op      `json:"failure,omitempty"`
	// WriteQuorum overrides, for keys of an eventual keyspace, how many
	// replicas must make the write durable before it is answered (0: the
	// policy's write_quorum). Strong keyspaces ignore it.
	WriteQuorum int `json:"write_quorum,omitempty"`
}

// OpResult is the outcome of one Op.
type OpResult struct {
	Type OpType `json:"op"`
	Key  string `json:"key"`
	// Record is the key after the op (put, patch) or as read (get); nil when absent.
	Record *Record `json:"record,omitempty"`
	// Deleted counts keys removed by delete and delete_prefix.
	Deleted int64 `json:"deleted,omitempty"`
	// Prev is the key before the op, for put, delete and expire when the
	// caller asked for it with Op.ReturnPrev (Redis GETSET, SET GET, GETDEL).
	Prev *Record `json:"prev,omitempty"`
}

// TxnResult is the outcome of a transaction.
type TxnResult struct {
	Succeeded bool       `json:"succeeded"`
	Revision  int64      `json:"revision"`
	Results   []OpResult `json:"results"`
	// Timestamp, Acks and Replicas describe a write to an eventual
	// keyspace (Revision is 0 then): the one stamp every op of the batch
	// carries, and the durable copies when it was answered (the fewest
	// over its keys) of how many.
	Timestamp string `json:"timestamp,omitempty"`
	Acks      int    `json:"acks,omitempty"`
	Replicas  int    `json:"replicas,omitempty"`
}

// PutOptions change how Put behaves.
type PutOptions struct {
	TTL time.Duration
	// WriteQuorum overrides an eventual keyspace's write_quorum (0: the policy's).
	WriteQuorum int
	// IfModRevision, when non-nil, makes the put conditional on the key's mod revision.
	IfModRevision *int64
	// IfAbsent makes the put succeed only when the key does not exist.
	IfAbsent bool
}

// DeleteOptions change how Delete behaves.
type DeleteOptions struct {
	Prefix        bool
	IfModRevision *int64
	// WriteQuorum overrides an eventual keyspace's write_quorum (0: the policy's).
	WriteQuorum int
}

// ReadOptions choose the consistency of a read.
type ReadOptions struct {
	// Serializable serves the read from the local replica without a leader check.
	Serializable bool
	// ReadMode is how a linearizable read of a strong key confirms the
	// leader: ReadModeDefault takes the server's --read-mode.
	ReadMode ReadMode
	// Local answers, for an eventual keyspace, from this node's own copy
	// only, whether or not it owns the key (consistency=local); strong
	// keyspaces treat it as Serializable.
	Local bool
	// ReadQuorum overrides an eventual keyspace's read_quorum (0: the policy's).
	ReadQuorum int
	// Fallback serves a key its replicas cannot answer (an eventual key
	// without R replicas up, a strong key without quorum) from its
	// keyspace's backup mirror, as a record marked SourceBackup. A front
	// end sets it for the keyspaces whose policy says read_fallback:
	// backup when it can mark its answer as such (HTTP can, RESP cannot).
	Fallback bool
}

// ReadMode is how a linearizable read of a strong keyspace learns that the
// leader it reads through is still the leader.
type ReadMode uint8

// Read modes.
const (
	// ReadModeDefault is the server's --read-mode.
	ReadModeDefault ReadMode = iota
	// ReadModeReadIndex confirms leadership with a quorum round (a
	// heartbeat to every follower, shared by the reads waiting together):
	// correct whatever the clocks do.
	ReadModeReadIndex
	// ReadModeLease serves the read on a leader whose lease holds without
	// a round: correct only while no member's clock runs faster than
	// another's by more than --lease-max-drift. A leader without a lease
	// falls back to the read index.
	ReadModeLease
)

// ParseReadMode reads "read-index" or "lease" ("" is ReadModeDefault).
func ParseReadMode(s string) (ReadMode, error) {
	switch s {
	case "":
		return ReadModeDefault, nil
	case "read-index":
		return ReadModeReadIndex, nil
	case "lease":
		return ReadModeLease, nil
	}
	return ReadModeDefault, fmt.Errorf("%w: read mode must be read-index or lease, not %q", ErrInvalidArgument, s)
}

// String is the mode's name as ParseReadMode reads it.
func (m ReadMode) String() string {
	switch m {
	case ReadModeReadIndex:
		return "read-index"
	case ReadModeLease:
		return "lease"
	}
	return ""
}

// ListOptions shape a prefix listing.
type ListOptions struct {
	ReadOptions
	// After lists keys strictly greater than this key (continuation).
	After    string
	Limit    int
	KeysOnly bool
}

// ListResult is one page of a listing.
type ListResult struct {
	Revision int64
	Items    []*Record
	More     bool
}

// ValidateKey checks the data-model rules for keys.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if len(key) > MaxKeyBytes {
		return fmt.Errorf("%w: key is %d bytes, the limit is %d", ErrInvalidKey, len(key), MaxKeyBytes)
	}
	for i := 0; i < len(key); i++ {
		if key[i] == 0 {
			return fmt.Errorf("%w: key contains a NUL byte", ErrInvalidKey)
		}
	}
	return nil
}
