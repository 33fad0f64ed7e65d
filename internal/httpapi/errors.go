package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

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

// fail answers with the status and code that err maps to. Anything the
// contract does not name is a 500, and is logged.
func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	var (
		re *requestError
		pe *kv.PreconditionError
	)
	if status, code, ok := isAuthError(r, err); ok {
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="cairn", charset="UTF-8"`)
		}
		writeError(w, status, code, err.Error(), nil)
		return
	}
	switch {
	case errors.As(err, &re):
		writeError(w, re.status, re.code, re.Error(), nil)
	case errors.As(err, &pe):
		var rev int64
		if pe.Current != nil {
			rev = pe.Current.ModRevision
		}
		w.Header().Set("X-Cairn-Revision", strconv.FormatInt(rev, 10))
		writeError(w, http.StatusPreconditionFailed, "precondition_failed", err.Error(), &rev)
	case errors.Is(err, kv.ErrPreconditionFailed):
		// A precondition error without the current record: the revision is unknown.
		writeError(w, http.StatusPreconditionFailed, "precondition_failed", err.Error(), nil)
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
	case errors.Is(err, kv.ErrInvalidKey), errors.Is(err, kv.ErrInvalidArgument),
		errors.Is(err, kv.ErrNotInteger), errors.Is(err, kv.ErrNotFloat), errors.Is(err, kv.ErrUnsupportedMode):
		writeError(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
	case errors.Is(err, kv.ErrNoLeader):
		writeError(w, http.StatusServiceUnavailable, "no_leader", err.Error(), nil)
	case errors.Is(err, kv.ErrUnavailable), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled):
		// Canceled usually means the client left and reads nothing; when it
		// does not (the service shutting down), retrying is the right advice.
		writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error(), nil)
	default:
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal", err.Error(), nil)
	}
}
