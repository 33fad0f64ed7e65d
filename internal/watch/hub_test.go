package watch

import (
	"errors"
	"testing"

	"github.com/cairnkv/cairn/kv"
)

func group(rev int64, keys ...string) Group {
	g := Group{Revision: rev}
	for _, k := range keys {
		g.Events = append(g.Events, kv.Event{Type: kv.EventPut, Key: k, Revision: rev})
	}
	return g
}

func TestHubFiltersAndDrops(t *testing.T) {
	var h Hub
	all, app, slow := h.Subscribe("", 8), h.Subscribe("app/", 8), h.Subscribe("", 1)
	h.Publish(group(1, "app/a", "other"))
	h.Publish(group(2, "other"))
	if g := <-app.C(); g.Revision != 1 || len(g.Events) != 1 || g.Events[0].Key != "app/a" {
		t.Fatalf("app/ got %+v", g)
	}
	if len(app.C()) != 0 {
		t.Fatal("app/ got a group with none of its keys")
	}
	if len(all.C()) != 2 {
		t.Fatalf("the empty prefix got %d groups, want 2", len(all.C()))
	}
	select {
	case <-slow.Done():
		if !errors.Is(slow.Err(), ErrSlow) || !errors.Is(slow.Err(), kv.ErrUnavailable) {
			t.Fatalf("slow ended with %v", slow.Err())
		}
		if len(slow.C()) != 1 {
			t.Fatal("what the slow subscriber had is gone")
		}
	default:
		t.Fatal("a full subscriber was not dropped")
	}
	app.Close()
	h.Publish(group(3, "app/b"))
	if len(app.C()) != 0 {
		t.Fatal("a closed subscription got a group")
	}
	closed := errors.New("closing")
	h.Close(closed)
	<-all.Done()
	if late := h.Subscribe("", 1); !errors.Is(late.Err(), closed) {
		t.Fatalf("a subscription after Close: %v", late.Err())
	}
}
