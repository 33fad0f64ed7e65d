package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/kv"
)

// requestError is a problem with the request itself, found before the
// service is called.
type requestError struct {
	status int
	code   string
	err    error
}

func (e *requestError) Error() string { return e.err.Error() }

func (e *requestError) Unwrap() error { return e.err }

func badRequest(format string, args ...any) error {
	return &requestError{http.StatusBadRequest, "bad_request", fmt.Errorf(format, args...)}
}

func tooLarge(format string, args ...any) error {
	return &requestError{http.StatusRequestEntityTooLarge, "value_too_large", fmt.Errorf(format, args...)}
}

// errorBody is the JSON shape of every error answer.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Revision is the key's current mod revision (0 when absent) on 412.
	Revision *int64 `json:"revision,omitempty"`
	// OldestRevision is the oldest revision a watch may start from, on 410.
	OldestRevision *int64 `json:"oldest_revision,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// An encoding error here means the client went away mid-answer.
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string, revision *int64) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, errorBody{errorDetail{Code: code, Message: msg, Revision: revision}})
}

// httpErrors maps each service error code to the HTTP status and the code
// of the JSON error body: the one place the HTTP API decides how an error
// looks on the wire (docs/API.md lists them).
var httpErrors = map[kv.Code]struct {
	status int
	code   string
}{
	kv.CodeKeyNotFound:        {http.StatusNotFound, "key_not_found"},
	kv.CodeNotFound:           {http.StatusNotFound, "not_found"},
	kv.CodeMemberNotFound:     {http.StatusNotFound, "member_not_found"},
	kv.CodeUnauthenticated:    {http.StatusUnauthorized, "unauthenticated"},
	kv.CodePermissionDenied:   {http.StatusForbidden, "permission_denied"},
	kv.CodePreconditionFailed: {http.StatusPreconditionFailed, "precondition_failed"},
	kv.CodeMemberExists:       {http.StatusConflict, "member_exists"},
	kv.CodeConflict:           {http.StatusConflict, "conflict"},
	kv.CodeNotJSON:            {http.StatusConflict, "not_json"},
	kv.CodeValueTooLarge:      {http.StatusRequestEntityTooLarge, "value_too_large"},
	kv.CodeInvalidKey:         {http.StatusBadRequest, "bad_request"},
	kv.CodeInvalidArgument:    {http.StatusBadRequest, "bad_request"},
	kv.CodeNotInteger:         {http.StatusBadRequest, "bad_request"},
	kv.CodeNotFloat:           {http.StatusBadRequest, "bad_request"},
	kv.CodeUnsupportedMode:    {http.StatusBadRequest, "bad_request"},
	kv.CodeNoLeader:           {http.StatusServiceUnavailable, "no_leader"},
	// Unavailable covers deadlines and cancellation too: canceled usually
	// means the client left and reads nothing; when it does not (the
	// service shutting down), retrying is the right advice.
	kv.CodeUnavailable: {http.StatusServiceUnavailable, "unavailable"},
	// Users or rules kept changing under a write: it had no effect; retry.
	kv.CodeAuthChanged: {http.StatusServiceUnavailable, "unavailable"},
	kv.CodeInternal:    {http.StatusInternalServerError, "internal"},
	// A watch from a revision the history no longer has.
	kv.CodeCompacted: {http.StatusGone, "compacted"},
}

// fail answers with the status and code that err maps to. Anything the
// contract does not name is a 500, and is logged.
func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	var (
		re *requestError
		pe *kv.PreconditionError
	)
	if errors.As(err, &re) {
		writeError(w, re.status, re.code, re.Error(), nil)
		return
	}
	code := kv.CodeOf(err)
	e, ok := httpErrors[code]
	if !ok {
		e = httpErrors[kv.CodeInternal]
	}
	switch {
	case code == kv.CodePermissionDenied && auth.FromContext(r.Context()).Via == "anonymous":
		// An anonymous caller the rules refuse is asked to authenticate.
		e.status, e.code = http.StatusUnauthorized, "unauthenticated"
	case errors.As(err, &pe):
		var rev int64
		if pe.Current != nil {
			rev = pe.Current.ModRevision
		}
		w.Header().Set("X-Cairn-Revision", strconv.FormatInt(rev, 10))
		writeError(w, e.status, e.code, err.Error(), &rev)
		return
	case code == kv.CodeCompacted:
		writeJSON(w, e.status, errorBody{errorDetail{Code: e.code, Message: err.Error(), OldestRevision: compactedDetail(err)}})
		return
	case e.status == http.StatusInternalServerError:
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="cairn", charset="UTF-8"`)
	}
	writeError(w, e.status, e.code, err.Error(), nil)
}
