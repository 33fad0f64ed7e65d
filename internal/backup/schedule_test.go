package backup

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/backup/snapfile"
)

// Scheduled backups are named by time and revision, written whole, kept
// to Retain, and taken only by the leader.
func TestScheduleRotates(t *testing.T) {
	dir := t.TempDir()
	target, err := ParseTarget("file://" + dir)
	if err != nil {
		t.Fatal(err)
	}
	rev := int64(0)
	clock := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	s := &Schedule{Target: target, Retain: 2, Log: slog.New(slog.DiscardHandler), now: func() time.Time { return clock },
		Save: func(_ context.Context, w io.Writer) (*snapfile.Info, error) {
			rev++
			sw := snapfile.NewWriter(w)
			info := snapfile.Info{Format: 1, Revision: rev}
			return &info, sw.Close(info)
		}}
	for i := range 4 {
		clock = clock.Add(time.Hour)
		name, err := s.Once(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 && name != "cairn-20261201T130000Z-r1.snapshot" {
			t.Fatalf("name %q", name)
		}
	}
	all, err := ListBackups(target)
	if err != nil || len(all) != 2 || all[0].Revision != 3 || all[1].Revision != 4 || !all[1].Time.Equal(clock) {
		t.Fatalf("kept %+v %v", all, err)
	}
	if _, err := VerifyFile(filepath.Join(dir, all[1].Name)); err != nil {
		t.Fatal(err)
	}
	// A failed save leaves nothing behind.
	s.Save = func(context.Context, io.Writer) (*snapfile.Info, error) { return nil, errors.New("no quorum") }
	if _, err := s.Once(context.Background()); err == nil {
		t.Fatal("a failed save was stored")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("after a failed save: %v", entries)
	}
	for _, bad := range []string{"s3://bucket/x", "file://relative", "http://x/", "file://host/x"} {
		if _, err := ParseTarget(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if p, err := ResolveRestore("file://" + dir + "/x.snapshot"); err != nil || p != dir+"/x.snapshot" {
		t.Fatalf("resolve: %q %v", p, err)
	}
}
