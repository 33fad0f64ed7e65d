package strong

import (
	"testing"
	"time"

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
