package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

// export writes a prefix into a directory, skipping keys that cannot be
// paths, and a second export rewrites only what changed, atomically.
func TestExport(t *testing.T) {
	ep, _, svc := realAPI(t)
	ctx := kvtest.Ctx(t)
	for k, v := range map[string]string{"pkgs/dists/Release": "R1", "pkgs/pool/a.deb": "A", "pkgs/a//b": "bad", "other/x": "no"} {
		if _, err := svc.Put(ctx, k, []byte(v), kv.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(t.TempDir(), "repo")
	code, out, errOut := run(t, "", ep, "-o", "json", "export", "pkgs/", dir)
	if code != ExitOK {
		t.Fatalf("export: exit %d: %s", code, errOut)
	}
	var sum exportSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Files != 2 || sum.Changed != 2 || len(sum.Skipped) != 1 || sum.Skipped[0].Key != "pkgs/a//b" {
		t.Fatalf("summary %s (%v)", out, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "dists", "Release")); err != nil || string(b) != "R1" {
		t.Fatalf("Release: %q %v", b, err)
	}
	if _, err := svc.Put(ctx, "pkgs/dists/Release", []byte("R2"), kv.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	first, _ := filepath.EvalSymlinks(dir)
	code, out, errOut = run(t, "", ep, "-o", "json", "export", "pkgs/", dir)
	if code != ExitOK {
		t.Fatalf("second export: exit %d: %s", code, errOut)
	}
	sum = exportSummary{}
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Changed != 1 || sum.Unchanged != 1 {
		t.Fatalf("second summary %s (%v)", out, err)
	}
	if second, _ := filepath.EvalSymlinks(dir); second == first {
		t.Fatal("the second export did not publish a new version")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "dists", "Release")); string(b) != "R2" {
		t.Fatalf("Release after the second export: %q", b)
	}
	if code, _, _ := run(t, "", ep, "export", "pkgs/", dir, "--file-mode", "rw"); code != ExitUsage {
		t.Fatalf("a bad --file-mode: exit %d", code)
	}
}
