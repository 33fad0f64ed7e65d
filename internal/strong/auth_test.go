package strong

import (
	"errors"
	"testing"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/kv"
)

func applyCommands(t *testing.T, m *Machine, first uint64, cs ...command) []error {
	t.Helper()
	entries := make([]raftnode.Entry, len(cs))
	for i, c := range cs {
		data, err := encodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeCommand(data)
		if err != nil || back.AuthChecked != c.AuthChecked || back.AuthRev != c.AuthRev {
			t.Fatalf("command codec: %+v %v", back, err)
		}
		entries[i] = raftnode.Entry{Index: first + uint64(i), Time: 1, Data: data}
	}
	b := m.db.NewBatch()
	out := m.Apply(b, entries)
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, len(out))
	for i, o := range out {
		_, errs[i] = decodeResult(o)
	}
	return errs
}

// A write checked against an older auth state than the one in force when it
// is applied is refused: a permission revoked before the commit never lets a
// write through, on any replica, wherever it was checked.
func TestWritesCheckedAgainstStaleAuthAreRefused(t *testing.T) {
	m, db := mustMachine(t)
	if m.AuthState().Rev != 0 {
		t.Fatalf("fresh auth revision %d", m.AuthState().Rev)
	}
	txn := func(rev uint64) command {
		return command{Type: cmdTxn, Txn: &kv.Txn{Success: []kv.Op{put("k", "v")}}, AuthChecked: true, AuthRev: rev}
	}
	rules := command{Type: cmdAuth, Auth: &kv.AuthChange{Op: kv.AuthRulesSet, Rules: []auth.Rule{{Identity: "a", Actions: []string{"read"}}}}}
	errs := applyCommands(t, m, 10, txn(0), rules, txn(0), txn(11),
		command{Type: cmdBatch, Batch: []kv.Txn{{Success: []kv.Op{put("b", "1")}}}, AuthChecked: true, AuthRev: 0})
	if errs[0] != nil || errs[1] != nil || errs[3] != nil {
		t.Fatalf("errors %v", errs)
	}
	if !errors.Is(errs[2], kv.ErrAuthChanged) || !errors.Is(errs[4], kv.ErrAuthChanged) {
		t.Fatalf("stale checks: %v, %v", errs[2], errs[4])
	}
	if rev := m.AuthState().Rev; rev != 11 {
		t.Fatalf("auth revision %d, want the rules' index 11", rev)
	}
	if mustGet(t, db, "b") != nil {
		t.Fatal("a refused batch was applied")
	}
	// The revision and the rules survive a reload (restart, snapshot).
	if err := m.Restored(); err != nil {
		t.Fatal(err)
	}
	if st := m.AuthState(); st.Rev != 11 || len(st.Rules) != 1 {
		t.Fatalf("after reload: %+v", st)
	}
}

func TestAuthOps(t *testing.T) {
	m, _ := mustMachine(t)
	h, _ := auth.HashPassword("pw")
	_, tok, _ := auth.NewToken()
	errs := applyCommands(t, m, 1,
		command{Type: cmdAuth, Auth: &kv.AuthChange{Op: kv.AuthUserPut, User: "bob", PasswordHash: h}},
		command{Type: cmdAuth, Auth: &kv.AuthChange{Op: kv.AuthTokenAdd, User: "bob", Token: &tok}},
		command{Type: cmdAuth, Auth: &kv.AuthChange{Op: kv.AuthTokenAdd, User: "nobody", Token: &tok}},
		command{Type: cmdAuth, Auth: &kv.AuthChange{Op: kv.AuthUserPut, User: "bob", PasswordHash: h}}, // keeps tokens
		command{Type: cmdAuth, Auth: &kv.AuthChange{Op: kv.AuthUserPut, User: "bad", PasswordHash: "not-bcrypt"}},
		command{Type: cmdAuth, Auth: &kv.AuthChange{Op: kv.AuthRulesSet, Rules: []auth.Rule{{Identity: "("}}}},
		command{Type: cmdAuth, Auth: &kv.AuthChange{Op: kv.AuthTokenDel, User: "bob", TokenID: "nope"}},
	)
	if errs[0] != nil || errs[1] != nil || errs[3] != nil {
		t.Fatalf("errors %v", errs)
	}
	if !errors.Is(errs[2], kv.ErrNotFound) || !errors.Is(errs[6], kv.ErrNotFound) {
		t.Errorf("missing user/token: %v %v", errs[2], errs[6])
	}
	if !errors.Is(errs[4], kv.ErrInvalidArgument) || !errors.Is(errs[5], kv.ErrInvalidArgument) {
		t.Errorf("invalid user/rules: %v %v", errs[4], errs[5])
	}
	st := m.AuthState()
	if len(st.Users) != 1 || st.Users[0].Name != "bob" || len(st.Users[0].Tokens) != 1 || len(st.Rules) != 0 {
		t.Fatalf("state %+v", st)
	}
	if err := m.Restored(); err != nil {
		t.Fatal(err)
	}
	if st2 := m.AuthState(); len(st2.Users) != 1 || len(st2.Users[0].Tokens) != 1 {
		t.Fatalf("reloaded %+v", st2)
	}
	errs = applyCommands(t, m, 20, command{Type: cmdAuth, Auth: &kv.AuthChange{Op: kv.AuthUserDel, User: "bob"}})
	if errs[0] != nil || len(m.AuthState().Users) != 0 {
		t.Fatalf("delete: %v %+v", errs, m.AuthState())
	}
	if err := m.Restored(); err != nil || len(m.AuthState().Users) != 0 {
		t.Fatalf("deleted user came back: %v %+v", err, m.AuthState())
	}
}
