package client_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/httpapi"
	"github.com/cairnkv/cairn/internal/kvtest"
)

// The client against the real HTTP API over a single-node service whose
// "ev/" keyspace kvtest's stand-in for the eventual engine serves: what it
// reads from the wire, not what a fake server believes the wire says.
func newEventualClient(t *testing.T) (*client.Client, *kvtest.FakeEventual) {
	t.Helper()
	ev := &kvtest.FakeEventual{Members: []string{"n1", "n2", "n3"}}
	svc := kvtest.NewService(t, kvtest.Eventual(ev))
	kvtest.MustEventualKeyspace(t, svc, "ev/")
	srv := httptest.NewServer(httpapi.New(svc, httpapi.Options{IsStale: svc.IsStale}))
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{Endpoints: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	return c, ev
}

func TestEventualItems(t *testing.T) {
	c, ev := newEventualClient(t)
	ctx := context.Background()
	w, err := c.PutWithResult(ctx, "ev/a", []byte("v"), client.PutOptions{WriteQuorum: 2})
	if err != nil || !w.Eventual() || w.Acks != 3 || w.Replicas != 3 || w.Revision != 0 {
		t.Fatalf("put: %+v %v", w, err)
	}
	if got := ev.Writes()[0].WriteQuorum; got != 2 {
		t.Errorf("write quorum %d reached the engine, want 2", got)
	}
	it, err := c.Get(ctx, "ev/a")
	if err != nil || string(it.Value) != "v" || !it.Eventual() || it.Timestamp != w.Timestamp || it.Origin != "n1" || it.ModRevision != 0 {
		t.Fatalf("get: %+v %v", it, err)
	}
	for _, o := range [][]client.ReadOption{{client.Local()}, {client.ReadQuorum(2)}} {
		if _, err := c.Get(ctx, "ev/a", o...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.List(ctx, "ev/", client.ListOptions{Local: true}); err != nil {
		t.Fatal(err)
	}
	reads := ev.Reads()
	if r := reads[len(reads)-3]; !r.Local {
		t.Errorf("Local() read with %+v", r)
	}
	if r := reads[len(reads)-2]; r.ReadQuorum != 2 {
		t.Errorf("ReadQuorum(2) read with %+v", r)
	}
	if r := reads[len(reads)-1]; !r.Local {
		t.Errorf("a local list read with %+v", r)
	}
	res, err := c.List(ctx, "ev/", client.ListOptions{})
	if err != nil || len(res.Items) != 1 || res.Items[0].Timestamp != w.Timestamp || res.Items[0].Origin != "n1" {
		t.Fatalf("list: %+v %v", res, err)
	}
	// A strong key is as before.
	rev, err := c.Put(ctx, "strong", []byte("s"), client.PutOptions{})
	if err != nil || rev != 1 {
		t.Fatalf("strong put: %d %v", rev, err)
	}
	if it, err := c.Get(ctx, "strong"); err != nil || it.Eventual() || it.ModRevision != 1 {
		t.Fatalf("strong get: %+v %v", it, err)
	}

	d, err := c.DeleteWithResult(ctx, "ev/a", client.DeleteOptions{})
	if err != nil || d.Deleted != 1 || !d.Eventual() || d.Timestamp <= w.Timestamp {
		t.Fatalf("delete: %+v %v", d, err)
	}
	if n, _, err := c.Delete(ctx, "ev/a", client.DeleteOptions{}); err != nil || n != 0 {
		t.Fatalf("delete again: %d %v", n, err)
	}
	if _, err := c.Get(ctx, "ev/a"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get after the delete: %v", err)
	}
	// What needs agreement is refused with the service's reason.
	var ae *client.APIError
	rev = 0
	if _, err := c.Put(ctx, "ev/a", []byte("x"), client.PutOptions{IfRevision: &rev}); !errors.As(err, &ae) || ae.StatusCode != 400 {
		t.Fatalf("If-Match on an eventual key: %v", err)
	}
}

func TestRingAndHealth(t *testing.T) {
	c, _ := newEventualClient(t)
	ctx := context.Background()
	r, err := c.Ring(ctx, "")
	if err != nil || r.Vnodes != 2048 || len(r.Members) != 3 || r.Members[0] != (client.RingMember{Name: "n1", Health: "self", Share: 1.0 / 3}) || r.Key != "" {
		t.Fatalf("ring: %+v %v", r, err)
	}
	r, err = c.Ring(ctx, "ev/x")
	if err != nil || r.Key != "ev/x" || r.Mode != "eventual" || r.Keyspace == nil || *r.Keyspace != "ev/" || r.Replicas != 3 || len(r.Preference) != 3 {
		t.Fatalf("ring of a key: %+v %v", r, err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.Health["n2"] != "healthy" || st.Health["n1"] != "self" {
		t.Fatalf("status: %+v %v", st, err)
	}
}
