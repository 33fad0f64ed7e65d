package kv

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/cairnkv/cairn/auth"
)

// Access control lives here, in one place, for every front end: each public
// method of Service asks the policy about the identity in its context
// (auth.FromContext) before it reads or proposes anything. Transactions are
// checked operation by operation, compares and both branches, whatever branch
// will run; a prefix delete needs the whole range; a list shows only the keys
// the identity may read. See package auth for the rule semantics.
//
// Users and rules have two layers: the node's config file (Config.AuthUsers,
// Config.AuthRules) and the replicated layer, changed through the Raft log by
// the admin methods below and kept by the engine behind Control (AuthState).

// AuthState is the replicated layer of users and ACL rules.
type AuthState struct {
	Users []auth.User // sorted by name
	Rules []auth.Rule
	// Rev is the log index of the last change (0: never changed). Commands
	// carry the Rev they were checked against.
	Rev uint64
}

// AuthChange is one change to the replicated auth state; the engine that
// keeps the control plane applies it (see Control.ChangeAuth).
type AuthChange struct {
	Op           string      `json:"op"`
	User         string      `json:"user,omitempty"`
	PasswordHash string      `json:"password_hash,omitempty"`
	Token        *auth.Token `json:"token,omitempty"`
	TokenID      string      `json:"token_id,omitempty"`
	Rules        []auth.Rule `json:"rules,omitempty"`
}

// AuthChange operations.
const (
	AuthUserPut  = "user_put" // create a user or set its password
	AuthUserDel  = "user_del"
	AuthTokenAdd = "token_add"
	AuthTokenDel = "token_del"
	AuthRulesSet = "rules_set"
)

// authView is the effective policy and user directory: the config layer
// followed by the replicated layer, compiled once per change.
type authView struct {
	state  *AuthState
	policy *auth.Policy
	dir    *auth.Directory
}

func (s *Service) authView() *authView {
	st := s.ctl.AuthState()
	if v := s.authCache.Load(); v != nil && v.state == st {
		return v
	}
	v := &authView{state: st}
	var err error
	if v.policy, err = auth.Compile(append(slices.Clone(s.cfg.AuthRules), st.Rules...)); err != nil {
		// Replicated rules are checked before they are proposed and when
		// applied; if they still do not compile (a regex engine change
		// between versions), fail closed.
		s.log.Error("ACL rules do not compile; denying every request", "err", err)
		v.policy, _ = auth.Compile([]auth.Rule{{Identity: ".*", Actions: []string{"read", "write", "admin"}, Effect: "deny"}})
	}
	users := make([]auth.User, 0, len(st.Users))
	for _, u := range st.Users {
		if !slices.ContainsFunc(s.cfg.AuthUsers, func(c auth.User) bool { return c.Name == u.Name }) {
			users = append(users, u)
		}
	}
	if v.dir, err = auth.NewDirectory(s.passwords, s.cfg.AuthUsers, users); err != nil {
		s.log.Error("users do not load; only certificates authenticate", "err", err)
		v.dir, _ = auth.NewDirectory(s.passwords)
	}
	s.authCache.Store(v)
	return v
}

// AuthRequired reports whether ACL rules are in force (a client that does not
// authenticate gets only what the rules give anonymous clients).
func (s *Service) AuthRequired() bool { return !s.authView().policy.Open() }

// Authenticate checks a user's password.
func (s *Service) Authenticate(user, password string) (auth.Identity, error) {
	id, err := s.authView().dir.Password(user, password)
	if err != nil {
		return id, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	return id, nil
}

// AuthenticateToken checks a bearer token.
func (s *Service) AuthenticateToken(token string) (auth.Identity, error) {
	id, err := s.authView().dir.Token(token)
	if err != nil {
		return id, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	return id, nil
}

func who(id auth.Identity) string {
	if id.Name == "" {
		return "anonymous"
	}
	return fmt.Sprintf("%q", id.Name)
}

// caller returns the identity in ctx, refusing one whose user has been
// deleted since it authenticated (a RESP connection stays authenticated
// across commands; deleting the user ends what it may do).
func (v *authView) caller(ctx context.Context) (auth.Identity, error) {
	id := auth.FromContext(ctx)
	if (id.Via == "password" || id.Via == "token") && !v.dir.Has(id.Name) {
		return id, fmt.Errorf("%w: user %q no longer exists", ErrUnauthenticated, id.Name)
	}
	return id, nil
}

// allow checks one action on one key for the caller.
func (s *Service) allow(ctx context.Context, a auth.Action, key string) error {
	v := s.authView()
	id, err := v.caller(ctx)
	if err != nil {
		return err
	}
	if v.policy.Allow(id, a, key) {
		return nil
	}
	return fmt.Errorf("%w: %s may not %s %q", ErrPermissionDenied, who(id), a, key)
}

// CheckAdmin returns ErrPermissionDenied unless the caller may do admin
// actions.
func (s *Service) CheckAdmin(ctx context.Context) error {
	v := s.authView()
	id, err := v.caller(ctx)
	if err != nil {
		return err
	}
	if v.policy.AllowAdmin(id) {
		return nil
	}
	return fmt.Errorf("%w: %s may not do admin actions", ErrPermissionDenied, who(id))
}

// CheckMetrics returns ErrPermissionDenied unless the caller may read the
// node's metrics (an admin, or a rule with the metrics action).
func (s *Service) CheckMetrics(ctx context.Context) error {
	v := s.authView()
	id, err := v.caller(ctx)
	if err != nil {
		return err
	}
	if v.policy.AllowMetrics(id) {
		return nil
	}
	return fmt.Errorf("%w: %s may not read the metrics", ErrPermissionDenied, who(id))
}

// authorizeTxn checks every compare and every operation of both branches
// against v.
func (s *Service) authorizeTxn(ctx context.Context, v *authView, t *Txn) error {
	if v.policy.Open() {
		return nil
	}
	id, err := v.caller(ctx)
	if err != nil {
		return err
	}
	deny := func(a auth.Action, what string) error {
		return fmt.Errorf("%w: %s may not %s %s", ErrPermissionDenied, who(id), a, what)
	}
	for _, c := range t.Compare {
		if !v.policy.Allow(id, auth.Read, c.Key) {
			return deny(auth.Read, fmt.Sprintf("%q (compare)", c.Key))
		}
	}
	for _, ops := range [][]Op{t.Success, t.Failure} {
		for _, op := range ops {
			var a auth.Action
			switch op.Type {
			case OpGet:
				a = auth.Read
			case OpPut, OpDelete, OpDeletePrefix, OpAppend, OpExpire:
				a = auth.Write
			default: // patch, incr, rename: they return or move the value
				a = auth.Read | auth.Write
			}
			if op.ReturnPrev {
				a |= auth.Read
			}
			if op.Type == OpDeletePrefix {
				if !v.policy.AllowRange(id, a, op.Key) {
					return deny(a, fmt.Sprintf("every key under %q", op.Key))
				}
				continue
			}
			if !v.policy.Allow(id, a, op.Key) {
				return deny(a, fmt.Sprintf("%q", op.Key))
			}
			if op.Type == OpRename && !v.policy.Allow(id, auth.Write, string(op.Value)) {
				return deny(auth.Write, fmt.Sprintf("%q", op.Value))
			}
		}
	}
	return nil
}

// UserInfo describes a user without its secrets.
type UserInfo struct {
	Name        string   `json:"name"`
	HasPassword bool     `json:"has_password"`
	Tokens      []string `json:"tokens"` // token ids
	// Source is "config" (the node's config file, read-only here) or
	// "cluster" (replicated, managed at run time).
	Source string `json:"source"`
}

// Users lists users (admin).
func (s *Service) Users(ctx context.Context) ([]UserInfo, error) {
	if err := s.CheckAdmin(ctx); err != nil {
		return nil, err
	}
	if err := s.ctl.Barrier(ctx); err != nil {
		return nil, err
	}
	info := func(u auth.User, src string) UserInfo {
		ui := UserInfo{Name: u.Name, HasPassword: u.PasswordHash != "", Tokens: []string{}, Source: src}
		for _, t := range u.Tokens {
			ui.Tokens = append(ui.Tokens, t.ID)
		}
		return ui
	}
	var out []UserInfo
	for _, u := range s.cfg.AuthUsers {
		out = append(out, info(u, "config"))
	}
	for _, u := range s.ctl.AuthState().Users {
		if !s.isConfigUser(u.Name) {
			out = append(out, info(u, "cluster"))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (s *Service) isConfigUser(name string) bool {
	return slices.ContainsFunc(s.cfg.AuthUsers, func(u auth.User) bool { return u.Name == name })
}

func (s *Service) proposeAuth(ctx context.Context, op *AuthChange) error {
	if err := s.CheckAdmin(ctx); err != nil {
		return err
	}
	if op.User != "" {
		if err := auth.ValidateName(op.User); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
		}
		if s.isConfigUser(op.User) {
			return fmt.Errorf("%w: user %q is defined in the config file; change it there", ErrInvalidArgument, op.User)
		}
	}
	return s.ctl.ChangeAuth(ctx, *op)
}

// PutUser creates a user or sets its password (admin). The password is
// hashed here; only the hash enters the log.
func (s *Service) PutUser(ctx context.Context, name, password string) error {
	if err := s.CheckAdmin(ctx); err != nil {
		return err
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	return s.proposeAuth(ctx, &AuthChange{Op: AuthUserPut, User: name, PasswordHash: hash})
}

// DeleteUser removes a user and its tokens (admin).
func (s *Service) DeleteUser(ctx context.Context, name string) error {
	return s.proposeAuth(ctx, &AuthChange{Op: AuthUserDel, User: name})
}

// AddToken issues a bearer token for a user (admin). The token is returned
// once; only its hash is stored.
func (s *Service) AddToken(ctx context.Context, user string) (token, id string, err error) {
	token, t, err := auth.NewToken()
	if err != nil {
		return "", "", err
	}
	if err := s.proposeAuth(ctx, &AuthChange{Op: AuthTokenAdd, User: user, Token: &t}); err != nil {
		return "", "", err
	}
	return token, t.ID, nil
}

// DeleteToken revokes a bearer token (admin).
func (s *Service) DeleteToken(ctx context.Context, user, id string) error {
	return s.proposeAuth(ctx, &AuthChange{Op: AuthTokenDel, User: user, TokenID: id})
}

// Rules returns the config file's rules and the replicated rules (admin);
// config rules are evaluated first.
func (s *Service) Rules(ctx context.Context) (config, cluster []auth.Rule, err error) {
	if err := s.CheckAdmin(ctx); err != nil {
		return nil, nil, err
	}
	if err := s.ctl.Barrier(ctx); err != nil {
		return nil, nil, err
	}
	config = append([]auth.Rule{}, s.cfg.AuthRules...)
	cluster = append([]auth.Rule{}, s.ctl.AuthState().Rules...)
	return config, cluster, nil
}

// SetRules replaces the replicated rules (admin). A change that would take
// admin away from the caller is refused, so nobody locks the cluster out of
// its own administration by accident.
func (s *Service) SetRules(ctx context.Context, rules []auth.Rule) error {
	if err := s.CheckAdmin(ctx); err != nil {
		return err
	}
	if rules == nil {
		rules = []auth.Rule{}
	}
	p, err := auth.Compile(append(slices.Clone(s.cfg.AuthRules), rules...))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	if id := auth.FromContext(ctx); !p.AllowAdmin(id) {
		return fmt.Errorf("%w: these rules would take admin away from %s, who is changing them; add a rule that keeps it", ErrInvalidArgument, who(id))
	}
	return s.proposeAuth(ctx, &AuthChange{Op: AuthRulesSet, Rules: rules})
}
