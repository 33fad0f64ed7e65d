package backup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

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
	for _, bad := range []string{"file://relative", "http://x/", "file://host/x"} {
		if _, err := ParseTarget(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := ParseTarget("s3://bucket/x"); err == nil || !strings.Contains(err.Error(), "built without s3://") {
		t.Errorf("s3:// without the backend linked: %v", err)
	}
	if p, done, err := Fetch(context.Background(), "file://"+dir+"/x.snapshot"); err != nil || p != dir+"/x.snapshot" {
		t.Fatalf("fetch: %q %v", p, err)
	} else {
		done()
	}
	if all[1].Bytes == 0 {
		t.Fatalf("no size listed: %+v", all[1])
	}
}

// A registered scheme's backups are restored through a temporary copy,
// removed afterwards.
func TestFetchRegisteredScheme(t *testing.T) {
	dir := t.TempDir()
	RegisterScheme("fetchtest", func(raw string) (Target, error) {
		if raw != "fetchtest://bucket/pre?x=1" {
			return nil, errors.New("unexpected target " + raw)
		}
		return &FileTarget{Dir: dir}, nil
	})
	if err := os.WriteFile(filepath.Join(dir, "b.snapshot"), []byte("bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, done, err := Fetch(context.Background(), "fetchtest://bucket/pre/b.snapshot?x=1")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "bytes" || p == filepath.Join(dir, "b.snapshot") {
		t.Fatalf("fetched %q: %q %v", p, b, err)
	}
	done()
	if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the temporary copy is left: %v", err)
	}
	if _, _, err := Fetch(context.Background(), "fetchtest://bucket/pre/missing.snapshot?x=1"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a missing backup: %v", err)
	}
	if _, _, err := Fetch(context.Background(), "fetchtest://bucket/pre/?x=1"); err == nil || !strings.Contains(err.Error(), "not one backup") {
		t.Fatalf("a target, not a backup: %v", err)
	}
}

// A schedule with recipients stores age files that only their identity
// opens; the snapshot inside is checked as usual.
func TestEncryptedBackups(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	recipients, err := ParseRecipients(id.Recipient().String())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	target, _ := ParseTarget("file://" + dir)
	secret := []byte("the secret value")
	s := &Schedule{Target: target, Recipients: recipients, Log: slog.New(slog.DiscardHandler),
		Save: func(_ context.Context, w io.Writer) (*snapfile.Info, error) {
			sw := snapfile.NewWriter(w)
			if err := sw.Strong([]byte("\x01k"), secret); err != nil {
				return nil, err
			}
			info := snapfile.Info{Format: 1, Revision: 5, StrongPairs: 1}
			return &info, sw.Close(info)
		}}
	name, err := s.Once(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(name, ".snapshot.age") {
		t.Fatalf("name %q", name)
	}
	if all, _ := ListBackups(target); len(all) != 1 || all[0].Revision != 5 {
		t.Fatalf("listed %+v", all)
	}
	raw, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil || bytes.Contains(raw, secret) {
		t.Fatalf("the target holds plaintext (%v)", err)
	}
	if _, err := VerifyFile(filepath.Join(dir, name)); err == nil || !strings.Contains(err.Error(), "encrypted") {
		t.Fatalf("no identity: %v", err)
	}
	other, _ := age.GenerateX25519Identity()
	if _, err := VerifyFile(filepath.Join(dir, name), other); err == nil {
		t.Fatal("the wrong identity decrypted it")
	}
	info, err := VerifyFile(filepath.Join(dir, name), id)
	if err != nil || info.Revision != 5 {
		t.Fatalf("with the identity: %+v %v", info, err)
	}
	for _, bad := range []string{"", "age1nope", "ssh-ed25519 AAAA"} {
		if _, err := ParseRecipients(bad); err == nil {
			t.Errorf("recipient %q accepted", bad)
		}
	}
}
