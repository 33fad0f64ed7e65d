package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/cairnkv/cairn/kv"
)

func (a *api) writeMembers(w http.ResponseWriter, r *http.Request, status int) {
	ms, err := a.svc.Members(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if ms == nil {
		ms = []kv.Member{}
	}
	writeJSON(w, status, map[string][]kv.Member{"members": ms})
}

func (a *api) members(w http.ResponseWriter, r *http.Request) { a.writeMembers(w, r, http.StatusOK) }

func decodeSmall(w http.ResponseWriter, r *http.Request, v any, optional bool) bool {
	body, ok := readBody(w, r, clusterBodyLimit)
	if !ok {
		return false
	}
	if optional && len(bytes.TrimSpace(body)) == 0 {
		return true
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		badRequest(w, "body: %v", err)
		return false
	}
	return true
}

func (a *api) addMember(w http.ResponseWriter, r *http.Request) {
	var m kv.MemberSpec
	if !decodeSmall(w, r, &m, false) {
		return
	}
	if m.Name == "" || m.PeerAddr == "" {
		badRequest(w, "name and peer_addr are required")
		return
	}
	if err := a.svc.AddMember(r.Context(), m); err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeMembers(w, r, http.StatusCreated)
}

func (a *api) removeMember(w http.ResponseWriter, r *http.Request) {
	if err := a.svc.RemoveMember(r.Context(), r.PathValue("name")); err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeMembers(w, r, http.StatusOK)
}

func (a *api) promote(w http.ResponseWriter, r *http.Request) {
	if err := a.svc.PromoteMember(r.Context(), r.PathValue("name")); err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeMembers(w, r, http.StatusOK)
}

func (a *api) transfer(w http.ResponseWriter, r *http.Request) {
	var body struct {
		To string `json:"to"`
	}
	if !decodeSmall(w, r, &body, true) {
		return
	}
	if err := a.svc.TransferLeadership(r.Context(), body.To); err != nil {
		a.fail(w, r, err)
		return
	}
	st, err := a.svc.Status(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"leader": st.Leader})
}

func (a *api) status(w http.ResponseWriter, r *http.Request) {
	st, err := a.svc.Status(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (a *api) ready(w http.ResponseWriter, _ *http.Request) {
	if err := a.svc.Ready(); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ready": true})
}
