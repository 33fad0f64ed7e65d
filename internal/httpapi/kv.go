package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// errNoAnswer guards against a service that returns neither a result nor an error.
var errNoAnswer = errors.New("httpapi: the service returned neither a result nor an error")

// item is one key of a listing or of a transaction result: with its
// revisions for a strong key, with its timestamp and origin (and no
// revisions) for an eventual one.
type item struct {
	Key string `json:"key"`
	// Value is base64 in JSON; nil (omitted) for keys-only listings.
	Value          *[]byte `json:"value,omitempty"`
	CreateRevision *int64  `json:"create_revision,omitempty"`
	ModRevision    *int64  `json:"mod_revision,omitempty"`
	Version        *int64  `json:"version,omitempty"`
	Expires        string  `json:"expires,omitempty"`
	Timestamp      string  `json:"timestamp,omitempty"`
	Origin         string  `json:"origin,omitempty"`
}

func itemOf(rec *kv.Record, withValue bool) *item {
	if rec == nil {
		return nil
	}
	it := &item{Key: rec.Key}
	if rec.Eventual() {
		it.Timestamp, it.Origin = rec.Timestamp, rec.Origin
	} else {
		it.CreateRevision, it.ModRevision, it.Version = &rec.CreateRevision, &rec.ModRevision, &rec.Version
	}
	if withValue {
		v := rec.Value
		if v == nil {
			v = []byte{}
		}
		it.Value = &v
	}
	if rec.Expires != 0 {
		it.Expires = formatExpiry(rec)
	}
	return it
}

func formatExpiry(rec *kv.Record) string { return rec.ExpiresAt().Format(time.RFC3339Nano) }

// setRecordHeaders describes rec in the answer's headers: its revisions
// (and ETag) for a strong key; for an eventual key, which has no revisions,
// its timestamp and origin and the keyspace's mode.
func setRecordHeaders(h http.Header, rec *kv.Record) {
	if rec.Eventual() {
		setStampHeaders(h, rec.Timestamp, rec.Origin)
	} else {
		rev := strconv.FormatInt(rec.ModRevision, 10)
		h.Set("ETag", `"`+rev+`"`)
		h.Set("X-Cairn-Revision", rev)
		h.Set("X-Cairn-Create-Revision", strconv.FormatInt(rec.CreateRevision, 10))
		h.Set("X-Cairn-Version", strconv.FormatInt(rec.Version, 10))
	}
	if rec.Expires != 0 {
		h.Set("X-Cairn-Expires", formatExpiry(rec))
	}
	if rec.Source == kv.SourceBackup {
		// Never silently: the replicas did not answer, the mirror did.
		h.Set("X-Cairn-Source", "backup")
		h.Set("X-Cairn-Stale", "true")
	}
}

// setStampHeaders marks an answer about an eventual key's version.
func setStampHeaders(h http.Header, timestamp, origin string) {
	h.Set("X-Cairn-Mode", "eventual")
	h.Set("X-Cairn-Timestamp", timestamp)
	if origin != "" {
		h.Set("X-Cairn-Origin", origin)
	}
}

func boolParam(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest("%s must be true or false, not %q", name, v)
	}
	return b, nil
}

// readOptions parses ?consistency= and ?r= for a read of key (or of the
// keys under it) and reports the choice in the answer's headers. An
// eventual keyspace asks R of a key's replicas (or, local, reads this
// node's copy only) whatever the consistency asked for; the headers say
// so, also when the key is absent.
func (a *api) readOptions(h http.Header, q url.Values, key string) (kv.ReadOptions, error) {
	var o kv.ReadOptions
	switch c := q.Get("consistency"); c {
	case "", "linearizable":
	case "lease":
		o.ReadMode = kv.ReadModeLease
	case "read-index":
		o.ReadMode = kv.ReadModeReadIndex
	case "serializable":
		o.Serializable = true
	case "local":
		o.Local = true
	default:
		return kv.ReadOptions{}, badRequest("consistency must be linearizable, lease, read-index, serializable or local, not %q", c)
	}
	var err error
	if o.ReadQuorum, err = quorumParam(q, "r"); err != nil {
		return kv.ReadOptions{}, err
	}
	if o.ReadQuorum > 0 && o.Local {
		return kv.ReadOptions{}, badRequest("r does not go with consistency=local, which reads this node's copy only")
	}
	switch f := q.Get("fallback"); f {
	case "":
	case "backup":
		o.Fallback = true
	default:
		return kv.ReadOptions{}, badRequest("fallback must be backup (read the keyspace's backup mirror when its replicas cannot answer), not %q", f)
	}
	switch {
	case o.Local:
		// This node's own copy, checked against no other: it may always
		// be out of date.
		h.Set("X-Cairn-Consistency", "local")
		h.Set("X-Cairn-Stale", "true")
	case a.svc.Keyspaces().Lookup(key).Mode == keyspace.Eventual:
		h.Set("X-Cairn-Consistency", "quorum")
	case o.Serializable:
		h.Set("X-Cairn-Consistency", "serializable")
		h.Set("X-Cairn-Stale", strconv.FormatBool(a.isStale != nil && a.isStale()))
	default:
		// lease and read-index are two ways of reading linearizably.
		h.Set("X-Cairn-Consistency", "linearizable")
	}
	return o, nil
}

// quorumParam reads ?r= or ?w=: how many replicas of an eventual key a read
// asks or a write waits for; 0 when absent (the keyspace's policy decides).
func quorumParam(q url.Values, name string) (int, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, badRequest("%s must be a positive whole number of replicas, not %q", name, v)
	}
	return n, nil
}

func checkPrefix(prefix string) error {
	if len(prefix) > kv.MaxKeyBytes {
		return fmt.Errorf("%w: prefix is %d bytes, the limit is %d", kv.ErrInvalidKey, len(prefix), kv.MaxKeyBytes)
	}
	return nil
}

// parseTTL accepts a Go duration ("30s", "1h30m") or whole seconds ("30").
func parseTTL(s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		const maxSeconds = int64(1<<63-1) / int64(time.Second)
		if n <= 0 || n > maxSeconds {
			return 0, badRequest("ttl must be a positive number of seconds or a duration like 30s, not %q", s)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, badRequest("ttl must be a positive duration like 30s, not %q", s)
	}
	return d, nil
}

// parseIfMatch reads If-Match: "<mod revision>" (quotes optional).
func parseIfMatch(h http.Header) (*int64, error) {
	raw := h.Get("If-Match")
	v := strings.TrimSpace(raw)
	if v == "" {
		return nil, nil
	}
	if v == "*" {
		return nil, badRequest(`If-Match: * is not supported; give the mod revision, as in If-Match: "42"`)
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return nil, badRequest(`If-Match must be one mod revision, as in If-Match: "42", not %q`, raw)
	}
	return &n, nil
}

// readValue reads a value body, refusing one over the limit before the
// service sees it. A body with a Content-Length is read into one buffer of
// exactly that size (a 50 MiB value costs 50 MiB, not the 64 + 32 + 16 …
// MiB that growing a buffer by doubling allocates); a chunked body, whose
// size is not known in advance, grows as it arrives, up to the limit.
func (a *api) readValue(r *http.Request) ([]byte, error) {
	if r.ContentLength > a.maxValue {
		return nil, tooLarge("the value is %d bytes, the limit is %d", r.ContentLength, a.maxValue)
	}
	if r.ContentLength > unauthBodyLimit && a.unauthenticated(r) {
		// Refused before the buffer is allocated, not when the body's
		// bytes have reached the limit.
		return nil, tooLarge("the body is over the limit of %d bytes for a client that has not authenticated", unauthBodyLimit)
	}
	var (
		b   []byte
		err error
	)
	if r.ContentLength >= 0 {
		b = make([]byte, r.ContentLength)
		_, err = io.ReadFull(r.Body, b)
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) && r.ContentLength > 0 {
			err = fmt.Errorf("the body ended before its Content-Length of %d bytes: %w", r.ContentLength, err)
		}
	} else {
		b, err = io.ReadAll(io.LimitReader(r.Body, a.maxValue+1))
	}
	if mb, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return nil, tooLarge("the body is over the limit of %d bytes for a client that has not authenticated", mb.Limit)
	}
	if err != nil {
		return nil, badRequest("reading the body: %w", err)
	}
	if int64(len(b)) > a.maxValue {
		return nil, tooLarge("the value is over the limit of %d bytes", a.maxValue)
	}
	return b, nil
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	list, err := boolParam(q, "list")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if list {
		a.list(w, r, q)
		return
	}
	key := r.PathValue("key")
	if err := kv.ValidateKey(key); err != nil {
		a.fail(w, r, err)
		return
	}
	ro, err := a.readOptions(w.Header(), q, key)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ro.Fallback = ro.Fallback || a.svc.Keyspaces().Lookup(key).ReadFallback == keyspace.ReadFallbackBackup
	rec, err := a.svc.Get(r.Context(), key, ro)
	if err == nil && rec == nil {
		err = errNoAnswer
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	h := w.Header()
	setRecordHeaders(h, rec)
	h.Set("Content-Type", "application/octet-stream")
	// Values are opaque: a browser must not guess that one is HTML.
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(rec.Value)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(rec.Value)
	}
}

// listResponse is the answer to GET /v1/kv/{prefix}?list=true.
type listResponse struct {
	Revision int64        `json:"revision"`
	Items    []listedItem `json:"items"`
	More     bool         `json:"more"`
}

// listedItem is a key of a listing; with ?hashes=true, also the SHA-256 of
// its value ("sha256:<hex>"), sent even with keys_only=true so that a
// client (cairn sync) can compare values without downloading them.
type listedItem struct {
	*item
	Hash string `json:"hash,omitempty"`
}

func (a *api) list(w http.ResponseWriter, r *http.Request, q url.Values) {
	prefix := r.PathValue("key")
	if err := checkPrefix(prefix); err != nil {
		a.fail(w, r, err)
		return
	}
	o := kv.ListOptions{After: q.Get("after")}
	var err error
	if o.KeysOnly, err = boolParam(q, "keys_only"); err != nil {
		a.fail(w, r, err)
		return
	}
	hashes, err := boolParam(q, "hashes")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// The hashes need the values, even when they are not sent.
	keysOnly := o.KeysOnly
	o.KeysOnly = keysOnly && !hashes
	if v := q.Get("limit"); v != "" {
		if o.Limit, err = strconv.Atoi(v); err != nil || o.Limit < 0 {
			a.fail(w, r, badRequest("limit must be a non-negative integer, not %q", v))
			return
		}
	}
	if o.ReadOptions, err = a.readOptions(w.Header(), q, prefix); err != nil {
		a.fail(w, r, err)
		return
	}
	if o.Fallback {
		a.fail(w, r, badRequest("fallback=backup reads one key; a listing is not served from the backup mirror"))
		return
	}
	res, err := a.svc.List(r.Context(), prefix, o)
	if err == nil && res == nil {
		err = errNoAnswer
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := listResponse{Revision: res.Revision, Items: make([]listedItem, 0, len(res.Items)), More: res.More}
	for _, rec := range res.Items {
		if rec != nil {
			li := listedItem{item: itemOf(rec, !keysOnly)}
			if hashes {
				sum := sha256.Sum256(rec.Value)
				li.Hash = "sha256:" + hex.EncodeToString(sum[:])
			}
			out.Items = append(out.Items, li)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) put(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if err := kv.ValidateKey(key); err != nil {
		a.fail(w, r, err)
		return
	}
	var (
		o   kv.PutOptions
		err error
	)
	if o.WriteQuorum, err = quorumParam(r.URL.Query(), "w"); err != nil {
		a.fail(w, r, err)
		return
	}
	if v := r.URL.Query().Get("ttl"); v != "" {
		if o.TTL, err = parseTTL(v); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	if o.IfModRevision, err = parseIfMatch(r.Header); err != nil {
		a.fail(w, r, err)
		return
	}
	if v := strings.TrimSpace(r.Header.Get("If-None-Match")); v != "" {
		if v != "*" {
			a.fail(w, r, badRequest("If-None-Match supports only *, not %q", v))
			return
		}
		o.IfAbsent = true
	}
	value, err := a.readValue(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	rec, err := a.svc.Put(r.Context(), key, value, o)
	if err == nil && rec == nil {
		err = errNoAnswer
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if rec.Eventual() {
		setStampHeaders(w.Header(), rec.Timestamp, rec.Origin)
		writeJSON(w, http.StatusOK, eventualWrite{Timestamp: rec.Timestamp, Acks: rec.Acks, Replicas: rec.Replicas})
		return
	}
	rev := strconv.FormatInt(rec.ModRevision, 10)
	w.Header().Set("ETag", `"`+rev+`"`)
	w.Header().Set("X-Cairn-Revision", rev)
	writeJSON(w, http.StatusOK, struct {
		Revision int64 `json:"revision"`
	}{rec.ModRevision})
}

// eventualWrite is the answer to a write of an eventual key: its version's
// timestamp, and how many of the key's replicas had made it durable when
// the write was answered. Deleted is for DELETE only.
type eventualWrite struct {
	Deleted   *int64 `json:"deleted,omitempty"`
	Timestamp string `json:"timestamp"`
	Acks      int    `json:"acks"`
	Replicas  int    `json:"replicas"`
}

func (a *api) del(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	q := r.URL.Query()
	prefix, err := boolParam(q, "prefix")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if prefix {
		err = checkPrefix(key)
	} else {
		err = kv.ValidateKey(key)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ifRev, err := parseIfMatch(r.Header)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if ifRev != nil {
		switch {
		case prefix:
			a.fail(w, r, badRequest("If-Match needs a single key, not ?prefix=true"))
			return
		case *ifRev == 0:
			// Revision 0 would match only a missing key, turning the delete
			// into a silent no-op instead of the 412 a missing key gets.
			a.fail(w, r, badRequest("If-Match on DELETE needs a mod revision of 1 or more"))
			return
		}
	}
	quorum, err := quorumParam(q, "w")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	res, err := a.deleteKeys(r.Context(), key, prefix, ifRev, quorum)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	n := res.Results[0].Deleted
	if res.Timestamp != "" {
		setStampHeaders(w.Header(), res.Timestamp, "")
		writeJSON(w, http.StatusOK, eventualWrite{Deleted: &n, Timestamp: res.Timestamp, Acks: res.Acks, Replicas: res.Replicas})
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Deleted  int64 `json:"deleted"`
		Revision int64 `json:"revision"`
	}{n, res.Revision})
}

// deleteKeys deletes key (or every key under it, prefix) as a one-op
// transaction, as kv.Service.Delete does, because only the transaction's
// result says what a delete of an eventual key answers: its timestamp and
// acks. ifRev makes it conditional on the key's mod revision (a
// *kv.PreconditionError when that does not hold); quorum is ?w=.
func (a *api) deleteKeys(ctx context.Context, key string, prefix bool, ifRev *int64, quorum int) (*kv.TxnResult, error) {
	op := kv.OpDelete
	if prefix {
		op = kv.OpDeletePrefix
	}
	t := kv.Txn{Success: []kv.Op{{Type: op, Key: key}}, WriteQuorum: quorum}
	if ifRev != nil {
		t.Compare = []kv.Compare{{Key: key, Target: kv.TargetModRevision, Op: "=", Number: *ifRev}}
		t.Failure = []kv.Op{{Type: kv.OpGet, Key: key}}
	}
	res, err := a.svc.Txn(ctx, t)
	if err != nil {
		return nil, err
	}
	if res == nil || len(res.Results) != 1 {
		return nil, errNoAnswer
	}
	if !res.Succeeded {
		return nil, &kv.PreconditionError{Key: key, Current: res.Results[0].Record}
	}
	return res, nil
}

func (a *api) patch(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if err := kv.ValidateKey(key); err != nil {
		a.fail(w, r, err)
		return
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/merge-patch+json" {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type",
			fmt.Sprintf("PATCH takes Content-Type: application/merge-patch+json, not %q", ct), nil)
		return
	}
	a.mergePatch(w, r, key, "the merge patch is not valid JSON")
}

// mergePatch applies the request body to key as a JSON merge patch and
// answers with the merged document (/v1/kv and the Repose API).
func (a *api) mergePatch(w http.ResponseWriter, r *http.Request, key, invalid string) {
	patch, err := a.readValue(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if !json.Valid(patch) {
		a.fail(w, r, badRequest("%s", invalid))
		return
	}
	rec, err := a.svc.Patch(r.Context(), key, patch)
	if err == nil && rec == nil {
		err = errNoAnswer
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	h := w.Header()
	setRecordHeaders(h, rec)
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(rec.Value)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(rec.Value)
}
