package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWatch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("from_revision") {
		case "1":
			w.WriteHeader(http.StatusGone)
			fmt.Fprint(w, `{"error":{"code":"compacted","message":"kv: revision compacted","oldest_revision":9}}`)
			return
		case "5":
		default:
			t.Errorf("from_revision %q", r.URL.RawQuery)
		}
		if r.URL.EscapedPath() != "/v1/watch/app%20x/" {
			t.Errorf("path %s", r.URL.EscapedPath())
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, ": watching\n\n"+
			"data: {\"type\":\"put\",\"key\":\"app x/a\",\"value\":\"MQ==\",\"revision\":7}\n\n"+
			"id: 7\ndata: {\"type\":\"delete\",\"key\":\"app x/b\",\"revision\":7}\n\n"+
			"id: 8\ndata: {\"type\":\"put\",\"key\":\"app x/big\",\"revision\":8,\"value_omitted\":true}\n\n"+
			": heartbeat\n\n"+
			"data: {\"type\":\"put\",\"key\":\"app x/e\",\"value\":\"Mg==\",\"timestamp\":\"t\",\"origin\":\"n2\"}\n\n"+
			"event: error\ndata: {\"error\":{\"code\":\"unavailable\",\"message\":\"kv: unavailable: watcher fell behind; resume from revision 8\"}}\n\n")
	}))
	defer srv.Close()
	c, err := New(Config{Endpoints: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	var got []Event
	err = c.Watch(context.Background(), "app x/", 5, func(ev Event) error { got = append(got, ev); return nil })
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != "unavailable" {
		t.Fatalf("the error event: %v", err)
	}
	if len(got) != 4 || string(got[0].Value) != "1" || got[0].Last || !got[1].Last || got[1].Type != "delete" ||
		got[1].Revision != 7 || got[0].ValueOmitted || !got[2].ValueOmitted || got[2].Value != nil || got[3].Origin != "n2" || got[3].Last {
		t.Fatalf("events %+v", got)
	}
	err = c.Watch(context.Background(), "app x/", 1, func(Event) error { return nil })
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusGone || ae.Code != "compacted" || ae.OldestRevision != 9 || !errors.Is(err, ErrCompacted) {
		t.Fatalf("410: %v", err)
	}
	stop := errors.New("stop")
	if err := c.Watch(context.Background(), "app x/", 5, func(Event) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("fn's error: %v", err)
	}
}
