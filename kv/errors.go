package kv

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// Errors returned by the service. Each has a protocol-neutral Code (CodeOf);
// every front end maps codes to its own answers in one table.
var (
	ErrKeyNotFound = errors.New("kv: key not found")
	// ErrNotFound is a missing user or token (auth administration).
	ErrNotFound = errors.New("kv: not found")
	// ErrUnauthenticated is a wrong user name, password or token.
	ErrUnauthenticated = errors.New("kv: authentication failed")
	// ErrAuthChanged: users or rules changed between the access check and
	// the commit; the command had no effect and is checked again.
	ErrAuthChanged = errors.New("kv: users or rules changed during the request")
	// ErrPermissionDenied is an identity the ACL rules do not allow the action.
	ErrPermissionDenied   = errors.New("kv: permission denied")
	ErrPreconditionFailed = errors.New("kv: precondition failed")
	ErrInvalidKey         = errors.New("kv: invalid key")
	ErrValueTooLarge      = errors.New("kv: value too large")
	ErrInvalidArgument    = errors.New("kv: invalid argument")
	ErrNotJSON            = errors.New("kv: value is not a JSON document")
	ErrUnsupportedMode    = errors.New("kv: keyspace mode not supported")
	// ErrNoLeader means the cluster has no leader this node can reach (no quorum).
	ErrNoLeader = errors.New("kv: no leader")
	// ErrUnavailable means the request could not be served in time; a write that
	// returns it may or may not have been applied.
	ErrUnavailable    = errors.New("kv: unavailable")
	ErrMemberNotFound = errors.New("kv: member not found")
	ErrMemberExists   = errors.New("kv: member already exists")
	// ErrConflict: the change contradicts the state it would apply to (a
	// keyspace policy over keys that exist, or a change of a keyspace's
	// mode); nothing changed.
	ErrConflict = errors.New("kv: conflict")
	// ErrNotInteger: an increment met a value (or delta) that is not a 64-bit integer, or overflowed.
	ErrNotInteger = errors.New("kv: value is not an integer or out of range")
	// ErrNotFloat: a float increment met a value that is not a number, or produced NaN/Inf.
	ErrNotFloat = errors.New("kv: value is not a valid float")
	// ErrInternal is an error the service has no code for (a bug or a
	// broken disk); front ends answer it as a server error.
	ErrInternal = errors.New("kv: internal error")
	// ErrCompacted: a watch asked for a revision older than the history
	// kept (see CompactedError, which carries the oldest one kept).
	ErrCompacted = errors.New("kv: revision compacted")
)

// Code names what went wrong, independent of any protocol: the HTTP API maps
// it to a status, the RESP API to an error prefix. The strings are stable
// (they travel between nodes in state machine results).
type Code string

// Codes, one per service error.
const (
	CodeOK                 Code = ""
	CodeKeyNotFound        Code = "key_not_found"
	CodeNotFound           Code = "not_found"
	CodeUnauthenticated    Code = "unauthenticated"
	CodeAuthChanged        Code = "auth_changed"
	CodePermissionDenied   Code = "permission_denied"
	CodePreconditionFailed Code = "precondition_failed"
	CodeInvalidKey         Code = "invalid_key"
	CodeValueTooLarge      Code = "value_too_large"
	CodeInvalidArgument    Code = "invalid_argument"
	CodeNotJSON            Code = "not_json"
	CodeUnsupportedMode    Code = "unsupported_mode"
	CodeNoLeader           Code = "no_leader"
	CodeUnavailable        Code = "unavailable"
	CodeMemberNotFound     Code = "member_not_found"
	CodeMemberExists       Code = "member_exists"
	CodeConflict           Code = "conflict"
	CodeNotInteger         Code = "not_integer"
	CodeNotFloat           Code = "not_float"
	CodeInternal           Code = "internal"
	CodeCompacted          Code = "compacted"
)

// codes pairs each code with its sentinel; CodeOf takes the first match.
var codes = []struct {
	code Code
	err  error
}{
	{CodeKeyNotFound, ErrKeyNotFound},
	{CodeNotFound, ErrNotFound},
	{CodeUnauthenticated, ErrUnauthenticated},
	{CodeAuthChanged, ErrAuthChanged},
	{CodePermissionDenied, ErrPermissionDenied},
	{CodePreconditionFailed, ErrPreconditionFailed},
	{CodeInvalidKey, ErrInvalidKey},
	{CodeValueTooLarge, ErrValueTooLarge},
	{CodeInvalidArgument, ErrInvalidArgument},
	{CodeNotJSON, ErrNotJSON},
	{CodeUnsupportedMode, ErrUnsupportedMode},
	{CodeNoLeader, ErrNoLeader},
	{CodeUnavailable, ErrUnavailable},
	{CodeMemberNotFound, ErrMemberNotFound},
	{CodeMemberExists, ErrMemberExists},
	{CodeConflict, ErrConflict},
	{CodeNotInteger, ErrNotInteger},
	{CodeNotFloat, ErrNotFloat},
	{CodeInternal, ErrInternal},
	{CodeCompacted, ErrCompacted},
}

// CodeOf returns err's code: CodeOK for nil, CodeUnavailable for a deadline
// or cancellation (the request may or may not have taken effect), and
// CodeInternal for an error the service does not know.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return CodeUnavailable
	}
	return CodeInternal
}

// Err returns the sentinel error of c (nil for CodeOK, ErrInternal for a
// code this version does not know).
func (c Code) Err() error {
	if c == CodeOK {
		return nil
	}
	for _, e := range codes {
		if e.code == c {
			return e.err
		}
	}
	return ErrInternal
}

// ErrorWithCode rebuilds an error that crossed a process boundary as its
// code and message, so errors.Is and CodeOf work on it again.
func ErrorWithCode(c Code, msg string) error {
	base := c.Err()
	if base == nil {
		return nil
	}
	if prefix := base.Error() + ": "; len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		msg = msg[len(prefix):]
	} else if msg == base.Error() {
		return base
	}
	return fmt.Errorf("%w: %s", base, msg)
}

// PreconditionError reports a failed condition and the key's current state.
type PreconditionError struct {
	Key     string
	Current *Record // nil when the key does not exist
}

func (e *PreconditionError) Error() string {
	if e.Current == nil {
		return fmt.Sprintf("kv: precondition failed on %q: key does not exist", e.Key)
	}
	return fmt.Sprintf("kv: precondition failed on %q: mod revision is %d", e.Key, e.Current.ModRevision)
}

// Unwrap lets errors.Is(err, ErrPreconditionFailed) match.
func (e *PreconditionError) Unwrap() error { return ErrPreconditionFailed }

// notFoundError is ErrKeyNotFound naming the key, the same text as
// fmt.Errorf("%w: %q") gives, formatted only when read: a GET of an absent
// key is common on the hot path, and formatting it there cost 3 % of a
// leader's CPU under redis-benchmark GET (docs/BENCHMARKS.md).
type notFoundError struct{ key string }

func keyNotFound(key string) error { return &notFoundError{key} }

func (e *notFoundError) Error() string { return ErrKeyNotFound.Error() + ": " + strconv.Quote(e.key) }

// Unwrap lets errors.Is(err, ErrKeyNotFound) match.
func (e *notFoundError) Unwrap() error { return ErrKeyNotFound }
