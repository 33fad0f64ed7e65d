package httpapi

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/kv"
)

// Authenticator checks credentials; *kv.Service implements it.
type Authenticator interface {
	Authenticate(user, password string) (auth.Identity, error)
	AuthenticateToken(token string) (auth.Identity, error)
	// AuthRequired reports whether ACL rules are in force.
	AuthRequired() bool
}

// unauthBodyLimit bounds the body of an anonymous request while ACL rules
// are in force: a client that has not authenticated cannot make the node
// buffer large values.
const unauthBodyLimit = 64 << 10

// AuthAdmin manages users and rules; *kv.Service implements it. Each method
// checks that the caller may do admin actions.
type AuthAdmin interface {
	CheckAdmin(ctx context.Context) error
	Users(ctx context.Context) ([]kv.UserInfo, error)
	PutUser(ctx context.Context, name, password string) error
	DeleteUser(ctx context.Context, name string) error
	AddToken(ctx context.Context, user string) (token, id string, err error)
	DeleteToken(ctx context.Context, user, id string) error
	Rules(ctx context.Context) (config, cluster []auth.Rule, err error)
	SetRules(ctx context.Context, rules []auth.Rule) error
}

var (
	_ Authenticator = (*kv.Service)(nil)
	_ AuthAdmin     = (*kv.Service)(nil)
)

// identify returns who sent r: credentials in the Authorization header
// (Basic: a user's password; Bearer: a token), else the CN of a client
// certificate verified on this TLS connection, else anonymous. Credentials
// that are present but wrong are an error, never anonymous. Nothing else in
// the request (X-Forwarded-*, X-Remote-User) is ever believed.
func (a *api) identify(r *http.Request) (auth.Identity, error) {
	h := r.Header.Get("Authorization")
	if h != "" {
		if a.authn == nil {
			return auth.Identity{}, kv.ErrUnauthenticated
		}
		scheme, cred, _ := strings.Cut(h, " ")
		cred = strings.TrimSpace(cred)
		switch strings.ToLower(scheme) {
		case "basic":
			raw, err := base64.StdEncoding.DecodeString(cred)
			if err != nil {
				return auth.Identity{}, kv.ErrUnauthenticated
			}
			user, pass, ok := strings.Cut(string(raw), ":")
			if !ok {
				return auth.Identity{}, kv.ErrUnauthenticated
			}
			return a.authn.Authenticate(user, pass)
		case "bearer":
			return a.authn.AuthenticateToken(cred)
		}
		return auth.Identity{}, kv.ErrUnauthenticated
	}
	if cn := auth.PeerIdentity(r.TLS); cn != "" {
		return auth.Identity{Name: cn, Via: "cert"}, nil
	}
	return auth.Anonymous, nil
}

// adminOnly serves h to identities that may do admin actions.
func (a *api) adminOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := a.admin.CheckAdmin(r.Context()); err != nil {
			a.fail(w, r, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (a *api) whoami(w http.ResponseWriter, r *http.Request) {
	id := auth.FromContext(r.Context())
	writeJSON(w, http.StatusOK, map[string]string{"identity": id.Name, "via": id.Via})
}

func (a *api) noAdmin(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotImplemented, "not_implemented", "user and rule management is not available on this server", nil)
}

func (a *api) listUsers(w http.ResponseWriter, r *http.Request) {
	us, err := a.admin.Users(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if us == nil {
		us = []kv.UserInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": us})
}

func (a *api) putUser(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Password string `json:"password"`
	}
	if err := decodeJSON(w, r, clusterBodyLimit, &body, false); err != nil {
		a.fail(w, r, err)
		return
	}
	if body.Password == "" {
		a.fail(w, r, badRequest(`the body must be {"password": "..."}`))
		return
	}
	if err := a.admin.PutUser(r.Context(), r.PathValue("name"), body.Password); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"name": r.PathValue("name")})
}

func (a *api) deleteUser(w http.ResponseWriter, r *http.Request) {
	if err := a.admin.DeleteUser(r.Context(), r.PathValue("name")); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) addToken(w http.ResponseWriter, r *http.Request) {
	token, id, err := a.admin.AddToken(r.Context(), r.PathValue("name"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, map[string]string{"user": r.PathValue("name"), "id": id, "token": token})
}

func (a *api) deleteToken(w http.ResponseWriter, r *http.Request) {
	if err := a.admin.DeleteToken(r.Context(), r.PathValue("name"), r.PathValue("id")); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// rulesBody is the shape of GET and PUT /v1/auth/rules.
type rulesBody struct {
	// Config is the config file's rules (read-only here), evaluated first.
	Config []auth.Rule `json:"config,omitempty"`
	Rules  []auth.Rule `json:"rules"`
}

func (a *api) getRules(w http.ResponseWriter, r *http.Request) {
	cfg, cluster, err := a.admin.Rules(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rulesBody{Config: cfg, Rules: cluster})
}

func (a *api) putRules(w http.ResponseWriter, r *http.Request) {
	var body rulesBody
	if err := decodeJSON(w, r, 1<<20, &body, false); err != nil {
		a.fail(w, r, err)
		return
	}
	if body.Config != nil {
		a.fail(w, r, badRequest("config rules come from the config file of each node and cannot be set here"))
		return
	}
	if err := a.admin.SetRules(r.Context(), body.Rules); err != nil {
		a.fail(w, r, err)
		return
	}
	a.getRules(w, r)
}
