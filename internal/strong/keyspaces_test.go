package strong

import (
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// Keyspace policies are replicated state: set and deleted through the log,
// in force on the machine as soon as applied, reloaded from the database.
func TestKeyspacePolicies(t *testing.T) {
	m, db := mustMachine(t)
	certs := keyspace.Policy{Prefix: "certs/", Mode: keyspace.Eventual, Replicas: 0, WriteQuorum: 1}
	cache := keyspace.Policy{Prefix: "cache/", Mode: keyspace.Eventual, Replicas: 1, DefaultTTL: time.Minute}
	errs := applyCommands(t, m, 1,
		command{Type: cmdKeyspaceSet, Keyspace: &certs},
		command{Type: cmdKeyspaceSet, Keyspace: &cache},
		command{Type: cmdKeyspaceSet, Keyspace: &keyspace.Policy{Prefix: "bad/", Mode: "sometimes"}},
		command{Type: cmdKeyspaceSet, Keyspace: &keyspace.Policy{Prefix: "", Mode: keyspace.Eventual}},
		command{Type: cmdKeyspaceDel, Name: ""},
		command{Type: cmdKeyspaceDel, Name: "nothing/"},
	)
	for i, want := range []kv.Code{kv.CodeOK, kv.CodeOK, kv.CodeInvalidArgument, kv.CodeInvalidArgument, kv.CodeInvalidArgument, kv.CodeNotFound} {
		if got := kv.CodeOf(errs[i]); got != want {
			t.Errorf("command %d: %v (code %q), want %q", i, errs[i], got, want)
		}
	}
	check := func(m *Machine, key string, want keyspace.Policy) {
		t.Helper()
		if got := m.Keyspaces().Lookup(key); got != want {
			t.Errorf("policy of %q: %+v, want %+v", key, got, want)
		}
	}
	strong := keyspace.Policy{Prefix: "", Mode: keyspace.Strong}
	check(m, "certs/www.crt", certs)
	check(m, "cache/x", cache)
	check(m, "bad/x", strong)
	check(m, "other", strong)

	// A machine opened on the same database (a restart, or a snapshot
	// restore) has the same policies.
	m2, err := NewMachine(db)
	if err != nil {
		t.Fatal(err)
	}
	check(m2, "certs/www.crt", certs)
	check(m2, "cache/x", cache)

	if errs := applyCommands(t, m2, 10, command{Type: cmdKeyspaceDel, Name: "certs/"}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	check(m2, "certs/www.crt", strong)
	m3, err := NewMachine(db)
	if err != nil {
		t.Fatal(err)
	}
	check(m3, "certs/www.crt", strong)
	check(m3, "cache/x", cache)
}

// A policy change that would move live records into another keyspace, or
// change a keyspace's mode, is refused at apply with kv.ErrConflict and
// changes nothing; the other fields of a policy may change.
func TestKeyspaceConflicts(t *testing.T) {
	m, db := mustMachine(t)
	now := time.Now().UnixNano()
	deep := keyspace.Policy{Prefix: "nested/deep/", Mode: keyspace.Strong}
	if errs := applyCommands(t, m, 1, command{Type: cmdKeyspaceSet, Keyspace: &deep}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	applyTxns(t, m, db, now,
		kv.Txn{Success: []kv.Op{put("full/a", "1"), put("nested/deep/x", "2")}},
		kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: "gone/a", Value: []byte("v"), TTL: time.Millisecond}}},
	)
	set := func(p keyspace.Policy) command { return command{Type: cmdKeyspaceSet, Keyspace: &p} }
	del := func(prefix string) command { return command{Type: cmdKeyspaceDel, Name: prefix} }
	apply := func(at int64, first uint64, cs ...command) []error {
		t.Helper()
		entries := make([]raftnode.Entry, len(cs))
		for i, c := range cs {
			data, err := encodeCommand(c)
			if err != nil {
				t.Fatal(err)
			}
			entries[i] = raftnode.Entry{Index: first + uint64(i), Time: at, Data: data}
		}
		b := db.NewBatch()
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
	strongP := func(prefix string) keyspace.Policy { return keyspace.Policy{Prefix: prefix, Mode: keyspace.Strong} }
	later := now + int64(time.Second)
	errs := apply(later, 100,
		set(strongP("full/")), // 0: holds full/a
		set(strongP("gone/")), // 1: its only key has expired at the entry's time
		set(keyspace.Policy{Prefix: "nested/deep/", Mode: keyspace.Strong, MaxValueBytes: 5}), // 2: other fields
		set(strongP("nested/")), // 3: its only key belongs to nested/deep/
		set(keyspace.Policy{Prefix: "gone/", Mode: keyspace.Eventual}),                                           // 4: a mode change
		set(keyspace.Policy{Prefix: "gone/", Mode: keyspace.Strong, DefaultTTL: time.Second, MaxValueBytes: 10}), // 5: other fields
		del("nested/deep/"), // 6: holds keys
		del("nested/"),      // 7: empty (its keys are nested/deep/'s)
		set(strongP("new/")),
	)
	want := []kv.Code{kv.CodeConflict, kv.CodeOK, kv.CodeOK, kv.CodeOK, kv.CodeConflict, kv.CodeOK, kv.CodeConflict, kv.CodeOK, kv.CodeOK}
	for i := range want {
		if got := kv.CodeOf(errs[i]); got != want[i] {
			t.Errorf("command %d: %v (code %q), want %q", i, errs[i], got, want[i])
		}
	}
	if p := m.Keyspaces().Lookup("full/a"); p.Prefix != "" {
		t.Errorf("a refused policy is in force: %+v", p)
	}
	if p := m.Keyspaces().Lookup("gone/a"); p.Mode != keyspace.Strong || p.DefaultTTL != time.Second {
		t.Errorf("gone/ after the changes: %+v", p)
	}

	// A key written earlier in the same batch counts; a key deleted earlier
	// in it does not.
	b := db.NewBatch()
	entries := []raftnode.Entry{}
	for i, c := range []command{
		{Type: cmdTxn, Txn: &kv.Txn{Success: []kv.Op{put("new/k", "v")}}},
		del("new/"),
		{Type: cmdTxn, Txn: &kv.Txn{Success: []kv.Op{{Type: kv.OpDelete, Key: "full/a"}}}},
		set(strongP("full/")),
	} {
		data, err := encodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, raftnode.Entry{Index: uint64(200 + i), Time: later, Data: data})
	}
	out := m.Apply(b, entries)
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	for i, want := range []kv.Code{kv.CodeOK, kv.CodeConflict, kv.CodeOK, kv.CodeOK} {
		_, err := decodeResult(out[i])
		if got := kv.CodeOf(err); got != want {
			t.Errorf("batch command %d: %v, want %q", i, err, want)
		}
	}
	if p := m.Keyspaces().Lookup("full/a"); p.Prefix != "full/" {
		t.Errorf("full/ once empty: %+v", p)
	}
}

// A strong write to a key of an eventual keyspace (sent by a node that
// routed it by a table it had not loaded yet) is refused at apply and
// changes nothing; the same put elsewhere applies.
func TestMachineRefusesEventualKeys(t *testing.T) {
	m, db := mustMachine(t)
	ev := keyspace.Policy{Prefix: "ev/", Mode: keyspace.Eventual, Replicas: 3, WriteQuorum: 1, SloppyQuorum: true}
	put := func(k string) *kv.Txn { return &kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: k, Value: []byte("v")}}} }
	rename := &kv.Txn{Success: []kv.Op{{Type: kv.OpRename, Key: "plain", Value: []byte("ev/moved")}}}
	errs := applyCommands(t, m, 1,
		command{Type: cmdKeyspaceSet, Keyspace: &ev},
		command{Type: cmdTxn, Txn: put("ev/x")},
		command{Type: cmdTxn, Txn: put("plain")},
		command{Type: cmdTxn, Txn: rename},
	)
	for i, want := range []kv.Code{kv.CodeOK, kv.CodeUnavailable, kv.CodeOK, kv.CodeUnavailable} {
		if got := kv.CodeOf(errs[i]); got != want {
			t.Errorf("command %d: %v (code %q), want %q", i, errs[i], got, want)
		}
	}
	if _, err := db.Get(dataKey("ev/x")); err == nil {
		t.Fatal("the refused put was stored")
	}
	if _, err := db.Get(dataKey("plain")); err != nil {
		t.Fatalf("the strong put: %v", err)
	}
}
