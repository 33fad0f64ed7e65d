//go:build unix

package cli

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

// A FIFO under DIR is skipped without being opened (a read would block).
func TestSyncSkipsFIFO(t *testing.T) {
	ep, _, svc := realAPI(t)
	dir := t.TempDir()
	mustTree(t, dir, map[string]string{"f": "x"})
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	s := mustSync(t, ep, dir, "p/")
	wantCounts(t, "fifo", s, 1, 0, 0)
	if len(s.Skipped) != 1 || s.Skipped[0].Path != "pipe" || !strings.Contains(s.Skipped[0].Reason, "not a regular file") {
		t.Fatalf("skipped %+v", s.Skipped)
	}
	if got := mustKeys(t, svc, "p/"); len(got) != 1 {
		t.Fatalf("keys %v", got)
	}
}

// A directory that cannot be read is skipped, and --delete keeps the keys
// below it.
func TestSyncUnreadableDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads every directory")
	}
	ep, _, svc := realAPI(t)
	dir := t.TempDir()
	mustTree(t, dir, map[string]string{"f": "x", "locked/g": "y"})
	kvtest.MustPut(t, svc, "p/locked/g", "y", kv.PutOptions{})
	locked := filepath.Join(dir, "locked")
	if err := os.Chmod(locked, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(locked, 0o755) })
	s := mustSync(t, ep, "--delete", dir, "p/")
	wantCounts(t, "unreadable", s, 1, 0, 0)
	if len(s.Skipped) != 1 || s.Skipped[0].Path != "locked" {
		t.Fatalf("skipped %+v", s.Skipped)
	}
	if got := mustKeys(t, svc, "p/"); got["p/locked/g"] != "y" {
		t.Fatalf("keys %v", got)
	}
}
