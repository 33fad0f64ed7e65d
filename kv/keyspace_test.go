package kv

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/keyspace"
)

// keyspaceControl is a control plane whose policy changes go straight into
// its table, recording what reached it.
type keyspaceControl struct {
	fakeControl
	sets     []keyspace.Policy
	dels     []string
	barriers int
	pending  []string
}

func (c *keyspaceControl) Barrier(context.Context) error { c.barriers++; return nil }

func (c *keyspaceControl) SetKeyspace(_ context.Context, p keyspace.Policy) ([]string, error) {
	c.sets = append(c.sets, p)
	ps := c.table.Policies()
	for i := range ps {
		if ps[i].Prefix == p.Prefix {
			ps = append(ps[:i], ps[i+1:]...)
			break
		}
	}
	return c.pending, c.table.Set(append(ps, p))
}

func (c *keyspaceControl) DeleteKeyspace(_ context.Context, prefix string) ([]string, error) {
	c.dels = append(c.dels, prefix)
	var ps []keyspace.Policy
	for _, p := range c.table.Policies() {
		if p.Prefix != prefix {
			ps = append(ps, p)
		}
	}
	return c.pending, c.table.Set(ps)
}

func newKeyspaceService(t *testing.T) (*Service, *keyspaceControl) {
	t.Helper()
	ctl := &keyspaceControl{fakeControl: fakeControl{table: keyspace.NewTable(), auth: &AuthState{}}}
	svc := NewService(Config{AuthRules: []auth.Rule{
		{Identity: "root", Actions: []string{"read", "write", "admin"}},
		{Identity: "bob", Actions: []string{"read", "write"}},
	}}, map[keyspace.Mode]Engine{keyspace.Strong: newFakeEngine("strong")}, ctl)
	return svc, ctl
}

func as(name string) context.Context {
	return auth.WithIdentity(context.Background(), auth.Identity{Name: name, Via: "cert"})
}

func TestKeyspacePolicyAdministration(t *testing.T) {
	svc, ctl := newKeyspaceService(t)
	root := as("root")
	sessions := keyspace.Policy{Prefix: "sessions/", Mode: keyspace.Strong, DefaultTTL: time.Minute}
	ch, err := svc.PutKeyspace(root, sessions)
	if err != nil || ch.Policy != sessions || ch.Pending == nil || len(ch.Pending) != 0 {
		t.Fatalf("put: %+v %v", ch, err)
	}
	if p, err := svc.Keyspace(root, "sessions/"); err != nil || *p != sessions {
		t.Fatalf("get: %+v %v", p, err)
	}
	if _, err := svc.Keyspace(root, "nothing/"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get of a missing policy: %v", err)
	}
	ps, err := svc.ListKeyspaces(root)
	if err != nil || len(ps) != 2 || ps[0].Prefix != "" || ps[1] != sessions {
		t.Fatalf("list: %+v %v", ps, err)
	}
	if ctl.barriers < 3 {
		t.Fatalf("reads of policies took %d barriers, want one each", ctl.barriers)
	}
	// The empty prefix's policy may change, and stays strong.
	if _, err := svc.PutKeyspace(root, keyspace.Policy{Prefix: "", Mode: keyspace.Strong, MaxValueBytes: 1000}); err != nil {
		t.Fatal(err)
	}
	ctl.pending = []string{"n3"}
	ch, err = svc.DeleteKeyspace(root, "sessions/")
	if err != nil || ch.Policy != sessions || len(ch.Pending) != 1 || ch.Pending[0] != "n3" {
		t.Fatalf("delete: %+v %v", ch, err)
	}
	if _, err := svc.DeleteKeyspace(root, "sessions/"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete again: %v", err)
	}
}

func TestKeyspaceChangesRefused(t *testing.T) {
	svc, ctl := newKeyspaceService(t)
	root := as("root")
	for name, c := range map[string]struct {
		ctx  context.Context
		p    keyspace.Policy
		code Code
		msg  string
	}{
		"not admin":        {as("bob"), keyspace.Policy{Prefix: "a/", Mode: keyspace.Strong}, CodePermissionDenied, ""},
		"eventual":         {root, keyspace.Policy{Prefix: "cache/", Mode: keyspace.Eventual, Replicas: 3}, CodeUnsupportedMode, "no engine for eventual"},
		"unknown mode":     {root, keyspace.Policy{Prefix: "a/", Mode: "sometimes"}, CodeInvalidArgument, ""},
		"negative ttl":     {root, keyspace.Policy{Prefix: "a/", Mode: keyspace.Strong, DefaultTTL: -time.Second}, CodeInvalidArgument, ""},
		"default eventual": {root, keyspace.Policy{Prefix: "", Mode: keyspace.Eventual}, CodeInvalidArgument, "always strong"},
		"strong replicas":  {root, keyspace.Policy{Prefix: "a/", Mode: keyspace.Strong, Replicas: 2}, CodeInvalidArgument, "eventual keyspaces only"},
		"over node limit":  {root, keyspace.Policy{Prefix: "a/", Mode: keyspace.Strong, MaxValueBytes: 2 << 20}, CodeInvalidArgument, "limit"},
		"nul":              {root, keyspace.Policy{Prefix: "a\x00", Mode: keyspace.Strong}, CodeInvalidKey, ""},
		"long":             {root, keyspace.Policy{Prefix: strings.Repeat("k", MaxKeyBytes+1), Mode: keyspace.Strong}, CodeInvalidKey, ""},
	} {
		_, err := svc.PutKeyspace(c.ctx, c.p)
		if CodeOf(err) != c.code || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v (code %q), want %q", name, err, CodeOf(err), c.code)
		}
	}
	if _, err := svc.DeleteKeyspace(root, ""); CodeOf(err) != CodeInvalidArgument {
		t.Errorf("delete of the empty prefix: %v", err)
	}
	for _, read := range []func() error{
		func() error { _, err := svc.ListKeyspaces(as("bob")); return err },
		func() error { _, err := svc.Keyspace(as("bob"), ""); return err },
		func() error { _, err := svc.DeleteKeyspace(as("bob"), "a/"); return err },
	} {
		if err := read(); CodeOf(err) != CodePermissionDenied {
			t.Errorf("policies without admin: %v", err)
		}
	}
	if len(ctl.sets) != 0 || len(ctl.dels) != 0 {
		t.Fatalf("refused changes reached the control plane: %v %v", ctl.sets, ctl.dels)
	}
}
