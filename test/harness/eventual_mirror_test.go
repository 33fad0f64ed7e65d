package harness

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

func TestMirrorDiff(t *testing.T) {
	now := time.Now()
	past, future := now.Add(-time.Second).UnixNano(), now.Add(time.Hour).UnixNano()
	for _, c := range []struct {
		name string
		got  map[string]mirrorObject
		want map[string]string
		diff string // "" for none, else a part of it
	}{
		{"equal", map[string]mirrorObject{"a": {value: "1"}, "b": {value: "2", expires: future}}, map[string]string{"a": "1", "b": "2"}, ""},
		{"empty", nil, nil, ""},
		{"missing", map[string]mirrorObject{}, map[string]string{"a": "1"}, `a missing (the key holds "1")`},
		{"other value", map[string]mirrorObject{"a": {value: "0"}}, map[string]string{"a": "1"}, `a holds "0", the key "1"`},
		{"left behind", map[string]mirrorObject{"a": {value: "0"}}, nil, `a holds "0", the key is gone`},
		{"left behind, expired", map[string]mirrorObject{"a": {value: "0", expires: past}}, nil, ""},
		{"expired after the end state", map[string]mirrorObject{"a": {value: "1", expires: past}}, map[string]string{"a": "1"}, ""},
		{"expired, other value", map[string]mirrorObject{"a": {value: "0", expires: past}}, map[string]string{"a": "1"}, `a holds "0", the key "1"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := mirrorDiff(c.got, c.want, now, func(string) string { return "seen" })
			switch {
			case c.diff == "" && d != "":
				t.Errorf("diff %q, want none", d)
			case c.diff != "" && !strings.Contains(d, c.diff+" (seen)"):
				t.Errorf("diff %q, want %q with the key's history", d, c.diff)
			}
		})
	}
}

// The bucket holds what is put, lists it under a prefix, answers 503 while
// down (counting the refusals) and records each key's writes and deletes.
func TestMirrorBucket(t *testing.T) {
	b := NewMirrorBucket(t)
	ctx := context.Background()
	put := func(key, value string) error {
		_, err := b.cli.PutObject(ctx, b.name, key, bytes.NewReader([]byte(value)), int64(len(value)),
			minio.PutObjectOptions{UserMetadata: map[string]string{"cairn-expires": "42"}})
		return err
	}
	start := time.Now()
	for k, v := range map[string]string{"evb/a": "1", "evb/b/c": "2", "other/x": "3"} {
		if err := put(k, v); err != nil {
			t.Fatal(err)
		}
	}
	got, err := b.objects(ctx, "evb/")
	if err != nil {
		t.Fatal(err)
	}
	if d := mirrorDiff(got, map[string]string{"evb/a": "1", "evb/b/c": "2"}, time.Unix(0, 0), nil); d != "" {
		t.Fatalf("objects differ: %s", d)
	}
	if got["evb/a"].expires != 42 {
		t.Errorf("expires %d, want 42 from the metadata", got["evb/a"].expires)
	}
	b.Down()
	if err := put("evb/a", "9"); err == nil || minio.ToErrorResponse(err).StatusCode != http.StatusServiceUnavailable {
		t.Errorf("put while down: %v, want a 503", err)
	}
	b.Up()
	if b.Refused() == 0 {
		t.Error("no request counted as refused")
	}
	if h := b.history("evb/a", start); !strings.Contains(h, "PUT 503") {
		t.Errorf("history %q, want the PUTs refused", h)
	}
	if ops := b.ops["evb/a"]; len(ops) < 2 || ops[0].method != http.MethodPut || ops[0].status != http.StatusOK {
		t.Errorf("writes of evb/a: %+v, want the PUT taken first", ops)
	}
}
