// Package httpapi is cairn's HTTP API v1 front end: values as raw bodies under
// /v1/kv/, JSON for listings, transactions and cluster administration, and
// /healthz and /readyz. It translates HTTP into calls on the kv service and
// the service's errors into status codes; it holds no state of its own.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cairnkv/cairn/kv"
)

// Service is what the HTTP API needs from the kv service.
type Service interface {
	Get(ctx context.Context, key string, o kv.ReadOptions) (*kv.Record, error)
	List(ctx context.Context, prefix string, o kv.ListOptions) (*kv.ListResult, error)
	Put(ctx context.Context, key string, value []byte, o kv.PutOptions) (*kv.Record, error)
	Delete(ctx context.Context, key string, o kv.DeleteOptions) (deleted, revision int64, err error)
	Patch(ctx context.Context, key string, patch []byte) (*kv.Record, error)
	Txn(ctx context.Context, t kv.Txn) (*kv.TxnResult, error)
	Members(ctx context.Context) ([]kv.Member, error)
	AddMember(ctx context.Context, m kv.MemberSpec) error
	RemoveMember(ctx context.Context, name string) error
	PromoteMember(ctx context.Context, name string) error
	TransferLeadership(ctx context.Context, to string) error
	Status(ctx context.Context) (*kv.Status, error)
	Ready() error
}

// Options configure the API.
type Options struct {
	MaxValueBytes int64
	Logger        *slog.Logger
	// IsStale reports whether this node has lost contact with a leader.
	IsStale func() bool
}

type api struct {
	svc Service
	o   Options
	log *slog.Logger
}

const clusterBodyLimit = 64 << 10

// New returns the handler for every HTTP API route.
func New(svc Service, o Options) http.Handler {
	if o.MaxValueBytes <= 0 {
		o.MaxValueBytes = 1 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	a := &api{svc: svc, o: o, log: o.Logger}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/kv/{key...}", a.get)
	mux.HandleFunc("HEAD /v1/kv/{key...}", a.get)
	mux.HandleFunc("PUT /v1/kv/{key...}", a.put)
	mux.HandleFunc("DELETE /v1/kv/{key...}", a.del)
	mux.HandleFunc("PATCH /v1/kv/{key...}", a.patch)
	mux.HandleFunc("POST /v1/txn", a.txn)
	mux.HandleFunc("GET /v1/cluster/members", a.members)
	mux.HandleFunc("POST /v1/cluster/members", a.addMember)
	mux.HandleFunc("DELETE /v1/cluster/members/{name}", a.removeMember)
	mux.HandleFunc("POST /v1/cluster/members/{name}/promote", a.promote)
	mux.HandleFunc("POST /v1/cluster/leader/transfer", a.transfer)
	mux.HandleFunc("GET /v1/cluster/status", a.status)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("GET /readyz", a.ready)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no route for "+r.Method+" "+r.URL.Path, nil)
	})
	return methodGuard(mux)
}

// methodGuard turns the mux's plain-text 405 into the JSON error shape.
func methodGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&jsonErrorWriter{ResponseWriter: w}, r)
	})
}

type jsonErrorWriter struct {
	http.ResponseWriter
	swallow bool
}

func (j *jsonErrorWriter) WriteHeader(code int) {
	if code == http.StatusMethodNotAllowed && j.Header().Get("Content-Type") != "application/json" {
		j.swallow = true
		writeError(j.ResponseWriter, code, "method_not_allowed", "method not allowed", nil)
		return
	}
	j.ResponseWriter.WriteHeader(code)
}

func (j *jsonErrorWriter) Write(b []byte) (int, error) {
	if j.swallow {
		return len(b), nil
	}
	return j.ResponseWriter.Write(b)
}

type errorBody struct {
	Error struct {
		Code     string `json:"code"`
		Message  string `json:"message"`
		Revision *int64 `json:"revision,omitempty"`
	} `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string, rev *int64) {
	var b errorBody
	b.Error.Code, b.Error.Message, b.Error.Revision = code, msg, rev
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, b)
}

func badRequest(w http.ResponseWriter, format string, args ...any) {
	writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf(format, args...), nil)
}

// fail maps a service error to a response.
func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	var pe *kv.PreconditionError
	switch {
	case errors.As(err, &pe):
		var rev int64
		if pe.Current != nil {
			rev = pe.Current.ModRevision
		}
		w.Header().Set("X-Cairn-Revision", strconv.FormatInt(rev, 10))
		writeError(w, http.StatusPreconditionFailed, "precondition_failed", err.Error(), &rev)
	case errors.Is(err, kv.ErrKeyNotFound):
		writeError(w, http.StatusNotFound, "key_not_found", err.Error(), nil)
	case errors.Is(err, kv.ErrMemberNotFound):
		writeError(w, http.StatusNotFound, "member_not_found", err.Error(), nil)
	case errors.Is(err, kv.ErrMemberExists):
		writeError(w, http.StatusConflict, "member_exists", err.Error(), nil)
	case errors.Is(err, kv.ErrNotJSON):
		writeError(w, http.StatusConflict, "not_json", err.Error(), nil)
	case errors.Is(err, kv.ErrValueTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "value_too_large", err.Error(), nil)
	case errors.Is(err, kv.ErrInvalidKey), errors.Is(err, kv.ErrInvalidArgument), errors.Is(err, kv.ErrNotInteger),
		errors.Is(err, kv.ErrNotFloat), errors.Is(err, kv.ErrUnsupportedMode):
		writeError(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
	case errors.Is(err, kv.ErrNoLeader):
		writeError(w, http.StatusServiceUnavailable, "no_leader", err.Error(), nil)
	case errors.Is(err, kv.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error(), nil)
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads the answer.
		writeError(w, 499, "canceled", err.Error(), nil)
	default:
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal", err.Error(), nil)
	}
}

func keyOf(w http.ResponseWriter, r *http.Request) (string, bool) {
	key := r.PathValue("key")
	if err := kv.ValidateKey(key); err != nil {
		badRequest(w, "%v", err)
		return "", false
	}
	return key, true
}

func readOptions(w http.ResponseWriter, r *http.Request) (kv.ReadOptions, bool) {
	switch c := r.URL.Query().Get("consistency"); c {
	case "", "linearizable":
		w.Header().Set("X-Cairn-Consistency", "linearizable")
		return kv.ReadOptions{}, true
	case "serializable":
		w.Header().Set("X-Cairn-Consistency", "serializable")
		return kv.ReadOptions{Serializable: true}, true
	default:
		badRequest(w, "consistency must be linearizable or serializable, not %q", c)
		return kv.ReadOptions{}, false
	}
}

func boolParam(w http.ResponseWriter, r *http.Request, name string) (bool, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, true
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		badRequest(w, "%s must be true or false, not %q", name, v)
		return false, false
	}
	return b, true
}

func setRecordHeaders(w http.ResponseWriter, rec *kv.Record) {
	h := w.Header()
	h.Set("ETag", `"`+strconv.FormatInt(rec.ModRevision, 10)+`"`)
	h.Set("X-Cairn-Revision", strconv.FormatInt(rec.ModRevision, 10))
	h.Set("X-Cairn-Create-Revision", strconv.FormatInt(rec.CreateRevision, 10))
	h.Set("X-Cairn-Version", strconv.FormatInt(rec.Version, 10))
	if rec.Expires != 0 {
		h.Set("X-Cairn-Expires", rec.ExpiresAt().Format(time.RFC3339Nano))
	}
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	list, ok := boolParam(w, r, "list")
	if !ok {
		return
	}
	if list {
		a.list(w, r)
		return
	}
	key, ok := keyOf(w, r)
	if !ok {
		return
	}
	ro, ok := readOptions(w, r)
	if !ok {
		return
	}
	if ro.Serializable && a.o.IsStale != nil {
		w.Header().Set("X-Cairn-Stale", strconv.FormatBool(a.o.IsStale()))
	}
	rec, err := a.svc.Get(r.Context(), key, ro)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	setRecordHeaders(w, rec)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(rec.Value)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(rec.Value)
	}
}

// Item is one key in a listing or a transaction result.
type Item struct {
	Key            string  `json:"key"`
	Value          *[]byte `json:"value,omitempty"`
	CreateRevision int64   `json:"create_revision"`
	ModRevision    int64   `json:"mod_revision"`
	Version        int64   `json:"version"`
	Expires        string  `json:"expires,omitempty"`
}

func itemOf(rec *kv.Record, withValue bool) *Item {
	if rec == nil {
		return nil
	}
	it := &Item{Key: rec.Key, CreateRevision: rec.CreateRevision, ModRevision: rec.ModRevision, Version: rec.Version}
	if withValue {
		v := rec.Value
		if v == nil {
			v = []byte{}
		}
		it.Value = &v
	}
	if rec.Expires != 0 {
		it.Expires = rec.ExpiresAt().Format(time.RFC3339Nano)
	}
	return it
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	prefix := r.PathValue("key")
	ro, ok := readOptions(w, r)
	if !ok {
		return
	}
	keysOnly, ok := boolParam(w, r, "keys_only")
	if !ok {
		return
	}
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			badRequest(w, "limit must be a non-negative integer, not %q", v)
			return
		}
		limit = n
	}
	if ro.Serializable && a.o.IsStale != nil {
		w.Header().Set("X-Cairn-Stale", strconv.FormatBool(a.o.IsStale()))
	}
	res, err := a.svc.List(r.Context(), prefix, kv.ListOptions{ReadOptions: ro, After: r.URL.Query().Get("after"), Limit: limit, KeysOnly: keysOnly})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := struct {
		Revision int64   `json:"revision"`
		Items    []*Item `json:"items"`
		More     bool    `json:"more"`
	}{Revision: res.Revision, Items: make([]*Item, 0, len(res.Items)), More: res.More}
	for _, rec := range res.Items {
		out.Items = append(out.Items, itemOf(rec, !keysOnly))
	}
	writeJSON(w, http.StatusOK, out)
}

// readBody reads at most limit bytes; more is a 413.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		badRequest(w, "reading the body: %v", err)
		return nil, false
	}
	if int64(len(b)) > limit {
		writeError(w, http.StatusRequestEntityTooLarge, "value_too_large", fmt.Sprintf("the body is larger than %d bytes", limit), nil)
		return nil, false
	}
	return b, true
}

// ifMatch parses If-Match: "<rev>" (quotes optional).
func ifMatch(w http.ResponseWriter, r *http.Request) (*int64, bool) {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	if v == "" {
		return nil, true
	}
	v = strings.TrimPrefix(v, "W/")
	v = strings.Trim(v, `"`)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		badRequest(w, "If-Match must be a quoted mod revision, not %q", r.Header.Get("If-Match"))
		return nil, false
	}
	return &n, true
}

func parseTTL(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n <= 0 || n > int64(100*365*24*time.Hour/time.Second) {
			return 0, fmt.Errorf("ttl must be positive, not %q", s)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("ttl must be a positive duration like 30s, not %q", s)
	}
	return d, nil
}

func (a *api) put(w http.ResponseWriter, r *http.Request) {
	key, ok := keyOf(w, r)
	if !ok {
		return
	}
	var o kv.PutOptions
	ttl, err := parseTTL(r.URL.Query().Get("ttl"))
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	o.TTL = ttl
	if o.IfModRevision, ok = ifMatch(w, r); !ok {
		return
	}
	if v := strings.TrimSpace(r.Header.Get("If-None-Match")); v != "" {
		if v != "*" {
			badRequest(w, "If-None-Match supports only *")
			return
		}
		o.IfAbsent = true
	}
	value, ok := readBody(w, r, a.o.MaxValueBytes)
	if !ok {
		return
	}
	rec, err := a.svc.Put(r.Context(), key, value, o)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("ETag", `"`+strconv.FormatInt(rec.ModRevision, 10)+`"`)
	writeJSON(w, http.StatusOK, map[string]int64{"revision": rec.ModRevision})
}

func (a *api) del(w http.ResponseWriter, r *http.Request) {
	prefix, ok := boolParam(w, r, "prefix")
	if !ok {
		return
	}
	key := r.PathValue("key")
	if !prefix {
		if key, ok = keyOf(w, r); !ok {
			return
		}
	}
	var o kv.DeleteOptions
	o.Prefix = prefix
	if o.IfModRevision, ok = ifMatch(w, r); !ok {
		return
	}
	n, rev, err := a.svc.Delete(r.Context(), key, o)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"deleted": n, "revision": rev})
}

func (a *api) patch(w http.ResponseWriter, r *http.Request) {
	key, ok := keyOf(w, r)
	if !ok {
		return
	}
	if ct := strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0]); ct != "application/merge-patch+json" {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "PATCH takes application/merge-patch+json, not "+strconv.Quote(ct), nil)
		return
	}
	body, ok := readBody(w, r, a.o.MaxValueBytes)
	if !ok {
		return
	}
	if !json.Valid(body) {
		badRequest(w, "the patch is not valid JSON")
		return
	}
	rec, err := a.svc.Patch(r.Context(), key, body)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	setRecordHeaders(w, rec)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(rec.Value)
}
