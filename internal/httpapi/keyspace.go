package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/cairnkv/cairn/keyspace"
)

// Keyspace policies: /v1/keyspaces lists them, /v1/keyspaces/{prefix}
// names one (the empty prefix is /v1/keyspaces/ with nothing after the
// slash). The prefix is the rest of the path, slashes included.
const keyspacesPrefix = "/v1/keyspaces/"

// keyspaceBodyLimit bounds a policy body (a prefix is at most 4 KiB).
const keyspaceBodyLimit = 16 << 10

// keyspaceResponse is the answer to a change: the policy and the members
// that had not applied it when the call stopped waiting for them.
type keyspaceResponse struct {
	keyspace.Policy
	Pending []string `json:"pending"`
}

// MarshalJSON puts pending beside the policy's own fields (an embedded
// type's MarshalJSON would otherwise be the whole answer).
func (k keyspaceResponse) MarshalJSON() ([]byte, error) {
	p, err := k.Policy.MarshalJSON()
	if err != nil {
		return nil, err
	}
	pending, err := json.Marshal(k.Pending)
	if err != nil {
		return nil, err
	}
	out := append(p[:len(p)-1:len(p)-1], `,"pending":`...)
	out = append(out, pending...)
	return append(out, '}'), nil
}

type keyspacesResponse struct {
	Keyspaces []keyspace.Policy `json:"keyspaces"`
}

func (a *api) listKeyspaces(w http.ResponseWriter, r *http.Request) {
	ps, err := a.svc.ListKeyspaces(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, keyspacesResponse{ps})
}

func (a *api) getKeyspace(w http.ResponseWriter, r *http.Request) {
	p, err := a.svc.Keyspace(r.Context(), r.PathValue("prefix"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (a *api) putKeyspace(w http.ResponseWriter, r *http.Request) {
	prefix := r.PathValue("prefix")
	body, err := readBody(w, r, keyspaceBodyLimit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var p keyspace.Policy
	if err := unmarshalStrict(body, &p, false); err != nil { // one JSON object, nothing after it
		a.fail(w, r, err)
		return
	}
	if _, err := keyspace.ParseJSON(body); err != nil { // and no field it does not know
		a.fail(w, r, badRequest("the body is not valid: %w", err))
		return
	}
	// The prefix comes from the path; a body may repeat it, not change it.
	var named struct {
		Prefix *string `json:"prefix"`
	}
	_ = json.Unmarshal(body, &named) // it decoded strictly above
	if named.Prefix != nil && *named.Prefix != prefix {
		a.fail(w, r, badRequest("the body names prefix %q but the path %q", *named.Prefix, prefix))
		return
	}
	p.Prefix = prefix
	ch, err := a.svc.PutKeyspace(r.Context(), p)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, keyspaceResponse{ch.Policy, ch.Pending})
}

func (a *api) deleteKeyspace(w http.ResponseWriter, r *http.Request) {
	ch, err := a.svc.DeleteKeyspace(r.Context(), r.PathValue("prefix"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, keyspaceResponse{ch.Policy, ch.Pending})
}

// uncleanRoute returns the handlers and Allow header of a path that
// http.ServeMux would redirect because it is not clean (a//b): key,
// keyspace and Repose object paths name a key or prefix as sent, so they
// are dispatched by ServeHTTP with the path value set.
func (a *api) uncleanRoute(r *http.Request) (methods, string, bool) {
	switch p := r.URL.EscapedPath(); {
	case strings.HasPrefix(p, kvPrefix):
		r.SetPathValue("key", strings.TrimPrefix(r.URL.Path, kvPrefix))
		return a.kv, a.kvAllow, true
	case strings.HasPrefix(p, keyspacesPrefix):
		r.SetPathValue("prefix", strings.TrimPrefix(r.URL.Path, keyspacesPrefix))
		return a.keyspace, a.keyspaceAllow, true
	case strings.HasPrefix(p, reposeObjects):
		r.SetPathValue("name", strings.TrimPrefix(r.URL.Path, reposeObjects))
		return a.repose, a.reposeAllow, true
	}
	return nil, "", false
}
