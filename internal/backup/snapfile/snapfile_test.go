package snapfile

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

func sample(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	w := NewWriter(&b)
	for i := range 50 {
		if err := w.Strong([]byte(fmt.Sprintf("\x01k%d", i)), bytes.Repeat([]byte{byte(i)}, i*10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Eventual(EventualRecord{Key: "ev/a", Value: []byte("1"), Timestamp: "2026-12-01T12:00:00.000Z-00000", Origin: "n1", Expires: 7}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(Info{Format: 1, Created: time.Unix(1, 0).UTC(), Revision: 9, StrongPairs: 50, EventualKeys: 1}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestSnapshotFileRoundTrip(t *testing.T) {
	file := sample(t)
	var keys []string
	var ev []EventualRecord
	info, err := Read(bytes.NewReader(file), func(k, v []byte) error {
		keys = append(keys, string(k))
		return nil
	}, func(r EventualRecord) error {
		ev = append(ev, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 50 || len(ev) != 1 || ev[0].Expires != 7 || ev[0].Origin != "n1" || info.Revision != 9 || info.Bytes != int64(len(file)) || len(info.SHA256) != 64 {
		t.Fatalf("read %d strong, %+v, info %+v", len(keys), ev, info)
	}
}

// Every truncation and every flipped byte is refused.
func TestSnapshotFileRefusesDamage(t *testing.T) {
	file := sample(t)
	for n := 0; n < len(file); n++ {
		if _, err := Verify(bytes.NewReader(file[:n])); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d of %d bytes: %v", n, len(file), err)
		}
	}
	for i := 0; i < len(file); i += 7 {
		bad := bytes.Clone(file)
		bad[i] ^= 0x40
		if _, err := Verify(bytes.NewReader(bad)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	if _, err := Verify(bytes.NewReader(append(bytes.Clone(file), 0))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a byte appended: %v", err)
	}
}
