package kv

import (
	"context"
	"errors"
	"iter"
	"slices"
	"testing"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/keyspace"
)

// watchEngine is a fakeEngine with a change feed that yields groups.
type watchEngine struct {
	*fakeEngine
	groups [][]Event
	err    error // the error the feed ends with
	from   []int64
}

func (w *watchEngine) Watch(_ context.Context, prefix string, from int64) (iter.Seq2[[]Event, error], error) {
	w.from = append(w.from, from)
	if from == 1 {
		return nil, &CompactedError{From: 1, Oldest: 5}
	}
	return func(yield func([]Event, error) bool) {
		for _, g := range w.groups {
			if !yield(g, nil) {
				return
			}
		}
		if w.err != nil {
			yield(nil, w.err)
		}
	}, nil
}

func newWatched(t *testing.T, rules []auth.Rule) (*Service, *watchEngine) {
	t.Helper()
	tbl := keyspace.NewTable()
	if err := tbl.Set([]keyspace.Policy{{Prefix: "ev/", Mode: keyspace.Eventual, Replicas: 3, WriteQuorum: 2}}); err != nil {
		t.Fatal(err)
	}
	strong := &watchEngine{fakeEngine: newFakeEngine("strong")}
	svc := NewService(Config{AuthRules: rules}, map[keyspace.Mode]Engine{keyspace.Strong: strong, keyspace.Eventual: newFakeEngine("eventual")},
		&fakeControl{table: tbl, auth: &AuthState{}})
	return svc, strong
}

// TestWatchFiltersByACL: events are filtered by read permission, the way
// List filters keys; a group left empty is not delivered.
func TestWatchFiltersByACL(t *testing.T) {
	svc, strong := newWatched(t, []auth.Rule{
		{Identity: "alice", Keys: "app/secret/", Actions: []string{"read"}, Effect: "deny"},
		{Identity: "alice", Keys: "app/", Actions: []string{"read"}},
		{Identity: "root", Actions: []string{"read", "write", "admin"}},
	})
	strong.groups = [][]Event{
		{{Type: EventPut, Key: "app/a", Revision: 3}, {Type: EventPut, Key: "app/secret/k", Revision: 3}, {Type: EventDelete, Key: "other", Revision: 3}},
		{{Type: EventPut, Key: "app/secret/x", Revision: 4}},
		{{Type: EventDelete, Key: "app/b", Revision: 5}},
	}
	strong.err = ErrUnavailable
	watchAs := func(name string) ([][]string, error) {
		ctx := auth.WithIdentity(context.Background(), auth.Identity{Name: name, Via: "cert"})
		seq, err := svc.Watch(ctx, "a", 2) // the fake ignores the prefix
		if err != nil {
			return nil, err
		}
		var out [][]string
		for g, err := range seq {
			if err != nil {
				return out, err
			}
			var keys []string
			for _, ev := range g {
				keys = append(keys, ev.Key)
			}
			out = append(out, keys)
		}
		return out, nil
	}
	got, err := watchAs("alice")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("the engine's error did not end alice's watch: %v", err)
	}
	if want := [][]string{{"app/a"}, {"app/b"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("alice sees %v, want %v", got, want)
	}
	got, _ = watchAs("root")
	if len(got) != 3 || len(got[0]) != 3 {
		t.Fatalf("root sees %v, want every event", got)
	}
	got, _ = watchAs("mallory")
	if len(got) != 0 {
		t.Fatalf("mallory sees %v, want nothing", got)
	}
}

func TestWatchRefusals(t *testing.T) {
	svc, strong := newWatched(t, nil)
	ctx := context.Background()
	if _, err := svc.Watch(ctx, "app/", 1); CodeOf(err) != CodeCompacted {
		t.Fatalf("compacted: %v (%s)", err, CodeOf(err))
	} else if ce := (*CompactedError)(nil); !errors.As(err, &ce) || ce.Oldest != 5 {
		t.Fatalf("compacted error %v does not carry the oldest revision", err)
	}
	if _, err := svc.Watch(ctx, "e", 0); CodeOf(err) != CodeUnsupportedMode {
		t.Fatalf("a prefix over both modes: %v, want unsupported_mode", err)
	}
	if _, err := svc.Watch(ctx, "ev/", 0); CodeOf(err) != CodeUnsupportedMode {
		t.Fatalf("an engine without a feed: %v, want unsupported_mode", err)
	}
	if _, err := svc.Watch(ctx, "a", -1); CodeOf(err) != CodeInvalidArgument {
		t.Fatalf("a negative revision: %v", err)
	}
	if _, err := svc.Watch(ctx, "app/", 7); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(strong.from, []int64{1, 7}) {
		t.Fatalf("the engine was asked from %v", strong.from)
	}
}

// TestWatchAcrossModes: a prefix over strong and eventual keyspaces merges
// both engines' feeds from now, and refuses a revision.
func TestWatchAcrossModes(t *testing.T) {
	tbl := keyspace.NewTable()
	if err := tbl.Set([]keyspace.Policy{{Prefix: "ev/", Mode: keyspace.Eventual, Replicas: 3, WriteQuorum: 2}}); err != nil {
		t.Fatal(err)
	}
	strong := &watchEngine{fakeEngine: newFakeEngine("strong"), groups: [][]Event{{{Type: EventPut, Key: "a", Revision: 2}, {Type: EventPut, Key: "b", Revision: 2}}}}
	eventual := &watchEngine{fakeEngine: newFakeEngine("eventual"), groups: [][]Event{{{Type: EventPut, Key: "ev/x", Timestamp: "t"}}}}
	svc := NewService(Config{}, map[keyspace.Mode]Engine{keyspace.Strong: strong, keyspace.Eventual: eventual},
		&fakeControl{table: tbl, auth: &AuthState{}})
	ctx := context.Background()
	if _, err := svc.Watch(ctx, "", 3); CodeOf(err) != CodeInvalidArgument {
		t.Fatalf("a revision over both modes: %v", err)
	}
	seq, err := svc.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for evs, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 2 && evs[0].Key != "a" || len(evs) == 1 && evs[0].Key != "ev/x" {
			t.Fatalf("a batch split or reordered: %+v", evs)
		}
		for _, ev := range evs {
			keys = append(keys, ev.Key)
		}
		if len(keys) == 3 {
			break
		}
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"a", "b", "ev/x"}) {
		t.Fatalf("merged: %v", keys)
	}
	// An error of either feed ends the merge.
	eventual.err = errors.New("feed closed")
	eventual.groups = nil
	strong.groups = nil
	seq, err = svc.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range seq {
		if err == nil || err.Error() != "feed closed" {
			t.Fatalf("the merge ended with %v", err)
		}
	}
}
