package kv

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/internal/store"
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
// the admin methods below and kept by the Machine (AuthState).

// AuthState is the replicated layer of users and ACL rules.
type AuthState struct {
	Users []auth.User // sorted by name
	Rules []auth.Rule
	// Rev is the log index of the last change (0: never changed). Commands
	// carry the Rev they were checked against.
	Rev uint64
}

// authOp is one change to the replicated auth state (a log command).
type authOp struct {
	Op           string      `json:"op"`
	User         string      `json:"user,omitempty"`
	PasswordHash string      `json:"password_hash,omitempty"`
	Token        *auth.Token `json:"token,omitempty"`
	TokenID      string      `json:"token_id,omitempty"`
	Rules        []auth.Rule `json:"rules,omitempty"`
}

const (
	authUserPut  = "user_put" // create a user or set its password
	authUserDel  = "user_del"
	authTokenAdd = "token_add"
	authTokenDel = "token_del"
	authRulesSet = "rules_set"
)

// AuthState returns the replicated users and rules as applied on this node.
func (m *Machine) AuthState() *AuthState { return m.authState.Load() }

func (m *Machine) loadAuth() error {
	st := &AuthState{}
	lo := authUserKey("")
	var derr error
	err := m.db.Scan(lo, store.PrefixEnd(lo), func(_, v []byte) bool {
		var u auth.User
		if derr = json.Unmarshal(v, &u); derr != nil {
			return false
		}
		st.Users = append(st.Users, u)
		return true
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("kv: load users: %w", err)
	}
	if raw, err := m.db.Get(authRevKey); err == nil && len(raw) == 8 {
		st.Rev = binary.BigEndian.Uint64(raw)
	}
	raw, err := m.db.Get(authRulesKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(raw, &st.Rules); err != nil {
			return fmt.Errorf("kv: load rules: %w", err)
		}
	}
	m.authState.Store(st)
	return nil
}

// applyAuth applies one auth change. It runs on the apply goroutine only.
func (m *Machine) applyAuth(b *store.Batch, op *authOp, index uint64) error {
	cur := m.authState.Load()
	next := &AuthState{Users: slices.Clone(cur.Users), Rules: cur.Rules, Rev: index}
	find := func(name string) int {
		i, ok := slices.BinarySearchFunc(next.Users, name, func(u auth.User, n string) int {
			switch {
			case u.Name < n:
				return -1
			case u.Name > n:
				return 1
			}
			return 0
		})
		if !ok {
			return -1
		}
		return i
	}
	var changed *auth.User
	switch op.Op {
	case authUserPut:
		u := auth.User{Name: op.User, PasswordHash: op.PasswordHash}
		if i := find(op.User); i >= 0 {
			u.Tokens = next.Users[i].Tokens
			next.Users[i] = u
		} else {
			next.Users = append(next.Users, u)
			sort.Slice(next.Users, func(i, j int) bool { return next.Users[i].Name < next.Users[j].Name })
		}
		if err := u.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
		}
		changed = &u
	case authUserDel:
		i := find(op.User)
		if i < 0 {
			return fmt.Errorf("%w: user %q", ErrNotFound, op.User)
		}
		next.Users = slices.Delete(next.Users, i, i+1)
		b.Delete(authUserKey(op.User))
	case authTokenAdd, authTokenDel:
		i := find(op.User)
		if i < 0 {
			return fmt.Errorf("%w: user %q", ErrNotFound, op.User)
		}
		u := next.Users[i]
		u.Tokens = slices.Clone(u.Tokens)
		if op.Op == authTokenAdd {
			if op.Token == nil {
				return fmt.Errorf("%w: token_add without a token", ErrInvalidArgument)
			}
			u.Tokens = append(u.Tokens, *op.Token)
		} else {
			j := slices.IndexFunc(u.Tokens, func(t auth.Token) bool { return t.ID == op.TokenID })
			if j < 0 {
				return fmt.Errorf("%w: token %q of user %q", ErrNotFound, op.TokenID, op.User)
			}
			u.Tokens = slices.Delete(u.Tokens, j, j+1)
		}
		if err := u.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
		}
		next.Users[i] = u
		changed = &u
	case authRulesSet:
		if _, err := auth.Compile(op.Rules); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
		}
		next.Rules = op.Rules
		raw, _ := json.Marshal(op.Rules)
		b.Set(authRulesKey, raw)
	default:
		return fmt.Errorf("%w: unknown auth operation %q", ErrInvalidArgument, op.Op)
	}
	if changed != nil {
		raw, _ := json.Marshal(changed)
		b.Set(authUserKey(changed.Name), raw)
	}
	var rev [8]byte
	binary.BigEndian.PutUint64(rev[:], index)
	b.Set(authRevKey, rev[:])
	m.authState.Store(next)
	return nil
}

// authView is the effective policy and user directory: the config layer
// followed by the replicated layer, compiled once per change.
type authView struct {
	state  *AuthState
	policy *auth.Policy
	dir    *auth.Directory
}

func (s *Service) authView() *authView {
	st := s.machine.AuthState()
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
	if err := s.barrier(ctx, ReadOptions{}); err != nil {
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
	for _, u := range s.machine.AuthState().Users {
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

func (s *Service) proposeAuth(ctx context.Context, op *authOp) error {
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
	_, err := s.propose(ctx, command{Type: cmdAuth, Auth: op})
	return err
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
	return s.proposeAuth(ctx, &authOp{Op: authUserPut, User: name, PasswordHash: hash})
}

// DeleteUser removes a user and its tokens (admin).
func (s *Service) DeleteUser(ctx context.Context, name string) error {
	return s.proposeAuth(ctx, &authOp{Op: authUserDel, User: name})
}

// AddToken issues a bearer token for a user (admin). The token is returned
// once; only its hash is stored.
func (s *Service) AddToken(ctx context.Context, user string) (token, id string, err error) {
	token, t, err := auth.NewToken()
	if err != nil {
		return "", "", err
	}
	if err := s.proposeAuth(ctx, &authOp{Op: authTokenAdd, User: user, Token: &t}); err != nil {
		return "", "", err
	}
	return token, t.ID, nil
}

// DeleteToken revokes a bearer token (admin).
func (s *Service) DeleteToken(ctx context.Context, user, id string) error {
	return s.proposeAuth(ctx, &authOp{Op: authTokenDel, User: user, TokenID: id})
}

// Rules returns the config file's rules and the replicated rules (admin);
// config rules are evaluated first.
func (s *Service) Rules(ctx context.Context) (config, cluster []auth.Rule, err error) {
	if err := s.CheckAdmin(ctx); err != nil {
		return nil, nil, err
	}
	if err := s.barrier(ctx, ReadOptions{}); err != nil {
		return nil, nil, err
	}
	config = append([]auth.Rule{}, s.cfg.AuthRules...)
	cluster = append([]auth.Rule{}, s.machine.AuthState().Rules...)
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
	return s.proposeAuth(ctx, &authOp{Op: authRulesSet, Rules: rules})
}
