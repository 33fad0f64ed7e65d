package strong

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/internal/store"
	"github.com/cairnkv/cairn/kv"
)

// The machine keeps the replicated layer of users and ACL rules (the
// config-file layer is the service's): changed only through the log, stored
// under 0x05 keys, and published as one immutable kv.AuthState that the
// service compiles into its access checks.

// AuthState returns the replicated users and rules as applied on this node.
func (m *Machine) AuthState() *kv.AuthState { return m.authState.Load() }

func (m *Machine) loadAuth() error {
	st := &kv.AuthState{}
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
		return fmt.Errorf("strong: load users: %w", err)
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
			return fmt.Errorf("strong: load rules: %w", err)
		}
	}
	m.authState.Store(st)
	return nil
}

// applyAuth applies one auth change. It runs on the apply goroutine only.
func (m *Machine) applyAuth(b *store.Batch, op *kv.AuthChange, index uint64) error {
	cur := m.authState.Load()
	next := &kv.AuthState{Users: slices.Clone(cur.Users), Rules: cur.Rules, Rev: index}
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
	case kv.AuthUserPut:
		u := auth.User{Name: op.User, PasswordHash: op.PasswordHash}
		if i := find(op.User); i >= 0 {
			u.Tokens = next.Users[i].Tokens
			next.Users[i] = u
		} else {
			next.Users = append(next.Users, u)
			sort.Slice(next.Users, func(i, j int) bool { return next.Users[i].Name < next.Users[j].Name })
		}
		if err := u.Validate(); err != nil {
			return fmt.Errorf("%w: %w", kv.ErrInvalidArgument, err)
		}
		changed = &u
	case kv.AuthUserDel:
		i := find(op.User)
		if i < 0 {
			return fmt.Errorf("%w: user %q", kv.ErrNotFound, op.User)
		}
		next.Users = slices.Delete(next.Users, i, i+1)
		b.Delete(authUserKey(op.User))
	case kv.AuthTokenAdd, kv.AuthTokenDel:
		i := find(op.User)
		if i < 0 {
			return fmt.Errorf("%w: user %q", kv.ErrNotFound, op.User)
		}
		u := next.Users[i]
		u.Tokens = slices.Clone(u.Tokens)
		if op.Op == kv.AuthTokenAdd {
			if op.Token == nil {
				return fmt.Errorf("%w: token_add without a token", kv.ErrInvalidArgument)
			}
			u.Tokens = append(u.Tokens, *op.Token)
		} else {
			j := slices.IndexFunc(u.Tokens, func(t auth.Token) bool { return t.ID == op.TokenID })
			if j < 0 {
				return fmt.Errorf("%w: token %q of user %q", kv.ErrNotFound, op.TokenID, op.User)
			}
			u.Tokens = slices.Delete(u.Tokens, j, j+1)
		}
		if err := u.Validate(); err != nil {
			return fmt.Errorf("%w: %w", kv.ErrInvalidArgument, err)
		}
		next.Users[i] = u
		changed = &u
	case kv.AuthRulesSet:
		if _, err := auth.Compile(op.Rules); err != nil {
			return fmt.Errorf("%w: %w", kv.ErrInvalidArgument, err)
		}
		next.Rules = op.Rules
		raw, _ := json.Marshal(op.Rules)
		b.Set(authRulesKey, raw)
	default:
		return fmt.Errorf("%w: unknown auth operation %q", kv.ErrInvalidArgument, op.Op)
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
