//go:build unix

package cli

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
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
