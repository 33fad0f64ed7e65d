package materialize

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir+"/", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func versions(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".cairn"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestTreePublishSwapsWholeVersions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	tree, err := OpenTree(dir, "certs/", 0o640, 0o750)
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	changed, err := tree.Publish(map[string]Entry{"a.org/cert": entry("certs/a.org/cert", "C1"), "a.org/key": entry("certs/a.org/key", "K1")})
	if err != nil || !slices.Equal(changed, []string{"certs/a.org/cert", "certs/a.org/key"}) {
		t.Fatalf("publish: %v %v", changed, err)
	}
	first, _ := filepath.EvalSymlinks(dir)
	if got := readTree(t, dir); len(got) != 2 || got["a.org/cert"] != "C1" || got["a.org/key"] != "K1" {
		t.Fatalf("tree %v", got)
	}
	if fi, err := os.Stat(filepath.Join(dir, "a.org/key")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("file mode: %v %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "a.org")); err != nil || fi.Mode().Perm() != 0o750 {
		t.Fatalf("dir mode: %v %v", fi.Mode(), err)
	}
	// The key changes, the cert does not: a new version, the cert a hard
	// link to the old one's, the old version whole until it is removed.
	cert := tree.Manifest().Files["a.org/cert"]
	changed, err = tree.Publish(map[string]Entry{"a.org/cert": {Meta: cert}, "a.org/key": entry("certs/a.org/key", "K2")})
	if err != nil || !slices.Equal(changed, []string{"certs/a.org/key"}) {
		t.Fatalf("second publish: %v %v", changed, err)
	}
	second, _ := filepath.EvalSymlinks(dir)
	if first == second {
		t.Fatal("the second publish did not make a new version")
	}
	if b, _ := os.ReadFile(filepath.Join(first, "a.org/key")); string(b) != "K1" {
		t.Fatalf("the previous version changed under its readers: %q", b)
	}
	a, _ := os.Stat(filepath.Join(first, "a.org/cert"))
	b, _ := os.Stat(filepath.Join(second, "a.org/cert"))
	if !os.SameFile(a, b) {
		t.Error("an unchanged file was copied, not linked")
	}
	// Only the current and the previous version are kept.
	for i := range 3 {
		if _, err := tree.Publish(map[string]Entry{"a.org/key": entry("certs/a.org/key", "K"+strings.Repeat("x", i))}); err != nil {
			t.Fatal(err)
		}
	}
	if v := versions(t, dir); len(v) != 2 {
		t.Fatalf("versions kept: %v", v)
	}
	if got := readTree(t, dir); len(got) != 1 {
		t.Fatalf("deleted files still published: %v", got)
	}
	// Nothing to change: no new version.
	cur := tree.Manifest().Version
	if changed, err := tree.Publish(map[string]Entry{"a.org/key": {Meta: tree.Manifest().Files["a.org/key"]}}); err != nil || changed != nil || tree.Manifest().Version != cur {
		t.Fatalf("a no-op publish: %v %v %s", changed, err, tree.Manifest().Version)
	}
}

func TestTreeKeepsForeignFilesAndReopens(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pkgs")
	if err := os.MkdirAll(filepath.Join(dir, "local"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "local", "notes.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	tree, err := OpenTree(dir, "pkgs/", 0o644, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(dir); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("an existing directory was not adopted: %v %v", fi, err)
	}
	if _, err := tree.Publish(map[string]Entry{"Release": entry("pkgs/Release", "R1")}); err != nil {
		t.Fatal(err)
	}
	if got := readTree(t, dir); got["local/notes.txt"] != "mine" || got["Release"] != "R1" {
		t.Fatalf("tree %v", got)
	}
	// Someone drops a file into the published tree; it is carried along.
	if err := os.WriteFile(filepath.Join(dir, "extra"), []byte("dropped"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := tree.Publish(map[string]Entry{"Release": entry("pkgs/Release", "R2")}); err != nil {
		t.Fatal(err)
	}
	if got := readTree(t, dir); got["extra"] != "dropped" || got["local/notes.txt"] != "mine" || got["Release"] != "R2" {
		t.Fatalf("tree %v", got)
	}
	if err := tree.AddPending([]string{"pkgs/Release"}); err != nil {
		t.Fatal(err)
	}
	tree.Close()

	// Reopened: the manifest, the pending hook keys, the foreign files.
	tree, err = OpenTree(dir, "pkgs/", 0o644, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	if m := tree.Manifest(); len(m.Files) != 1 || m.Files["Release"].Key != "pkgs/Release" {
		t.Fatalf("manifest after reopen: %+v", m)
	}
	keys, gen := tree.Pending()
	if !slices.Equal(keys, []string{"pkgs/Release"}) {
		t.Fatalf("pending after reopen: %v", keys)
	}
	if err := tree.ClearPending(gen); err != nil {
		t.Fatal(err)
	}
	if keys, _ := tree.Pending(); len(keys) != 0 {
		t.Fatalf("pending after clear: %v", keys)
	}
	// Someone removes a file cairn wrote: the publish that links it says so.
	if err := os.Remove(filepath.Join(dir, "Release")); err != nil {
		t.Fatal(err)
	}
	var missing *MissingError
	if _, err := tree.Publish(map[string]Entry{"Release": {Meta: tree.Manifest().Files["Release"]}, "new": entry("pkgs/new", "n")}); !errors.As(err, &missing) || missing.Rel != "Release" {
		t.Fatalf("publish over a removed file: %v", err)
	}
}

func TestTreeRefusesForeignSymlink(t *testing.T) {
	base := t.TempDir()
	if err := os.Symlink("/etc", filepath.Join(base, "certs")); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenTree(filepath.Join(base, "certs"), "certs/", 0o644, 0o755); err == nil || !strings.Contains(err.Error(), "cairn did not make") {
		t.Fatalf("a foreign symlink: %v", err)
	}
	if _, err := OpenTree("relative/dir", "certs/", 0o644, 0o755); err == nil {
		t.Fatal("a relative directory was accepted")
	}
}
