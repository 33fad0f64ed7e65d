package httpapi

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cairnkv/cairn/kv"
)

// membersResponse is the answer of every membership endpoint: the members
// as they are after the request.
type membersResponse struct {
	Members []kv.Member `json:"members"`
}

func (a *api) writeMembers(w http.ResponseWriter, r *http.Request, status int) {
	ms, err := a.svc.Members(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if ms == nil {
		ms = []kv.Member{}
	}
	writeJSON(w, status, membersResponse{ms})
}

func (a *api) members(w http.ResponseWriter, r *http.Request) { a.writeMembers(w, r, http.StatusOK) }

func (a *api) addMember(w http.ResponseWriter, r *http.Request) {
	var m kv.MemberSpec
	if err := decodeJSON(w, r, clusterBodyLimit, &m, false); err != nil {
		a.fail(w, r, err)
		return
	}
	if m.Name == "" || m.PeerAddr == "" {
		a.fail(w, r, badRequest("name and peer_addr are required"))
		return
	}
	if err := a.svc.AddMember(r.Context(), m); err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeMembers(w, r, http.StatusCreated)
}

func (a *api) removeMember(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := a.svc.RemoveMember(r.Context(), name); err != nil {
		a.fail(w, r, err)
		return
	}
	ms, err := a.svc.Members(r.Context())
	if err != nil {
		// The removal took effect, but this node cannot list the members
		// now: it may be the member just removed (Raft stops a leader that
		// removes itself). Say the removal worked rather than 503.
		writeJSON(w, http.StatusOK, map[string]any{"removed": name, "members": nil,
			"message": "removed; this node cannot list the members now (" + err.Error() + ")"})
		return
	}
	if ms == nil {
		ms = []kv.Member{}
	}
	writeJSON(w, http.StatusOK, membersResponse{ms})
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
	if err := decodeJSON(w, r, clusterBodyLimit, &body, true); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.svc.TransferLeadership(r.Context(), body.To); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Leader string `json:"leader"`
	}{a.newLeader(r.Context(), body.To)})
}

// newLeader waits a little for this node to learn who leads after a
// transfer: a node that just stepped down knows no leader until the next
// heartbeat. The transfer is done either way, so not knowing is no failure;
// the member asked for is the best guess then.
func (a *api) newLeader(ctx context.Context, to string) string {
	ctx, cancel := context.WithTimeout(ctx, a.leaderWait)
	defer cancel()
	tick := time.NewTicker(leaderPoll)
	defer tick.Stop()
	for {
		if st, err := a.svc.Status(ctx); err == nil && st != nil && st.Leader != "" {
			return st.Leader
		}
		select {
		case <-ctx.Done():
			return to
		case <-tick.C:
		}
	}
}

func (a *api) status(w http.ResponseWriter, r *http.Request) {
	a.allowMemberOrigin(w, r)
	st, err := a.svc.Status(r.Context())
	if err == nil && st == nil {
		err = errNoAnswer
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// ring answers GET /v1/ring (the ring and each member's health) and
// GET /v1/ring?key=K (where K lives, too).
func (a *api) ring(w http.ResponseWriter, r *http.Request) {
	info, err := a.svc.Ring(r.Context(), r.URL.Query().Get("key"))
	if err == nil && info == nil {
		err = errNoAnswer
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (a *api) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		OK bool `json:"ok"`
	}{true})
}

func (a *api) readyz(w http.ResponseWriter, _ *http.Request) {
	if err := a.svc.Ready(); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, struct {
			Ready bool   `json:"ready"`
			Error string `json:"error"`
		}{false, err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Ready bool `json:"ready"`
	}{true})
}

// allowMemberOrigin lets the dashboard of another member read this node's
// status from the browser: a request whose Origin is the client URL of a
// member of the cluster gets that origin in Access-Control-Allow-Origin
// (never "*", never with credentials: the status needs none). A node
// that cannot list its members (no quorum) sends nothing, and the page
// shows that member's Raft view as unknown.
func (a *api) allowMemberOrigin(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	w.Header().Add("Vary", "Origin")
	if origin == "" {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	ms, err := a.svc.Members(ctx)
	if err != nil {
		return
	}
	for _, m := range ms {
		if u, err := url.Parse(m.ClientURL); err == nil && u.Host != "" && strings.EqualFold(u.Scheme+"://"+u.Host, origin) {
			w.Header().Set("Access-Control-Allow-Origin", origin)
			return
		}
	}
}
