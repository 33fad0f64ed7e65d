package materialize

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// hostileKeys are keys under "certs/" that must never become files.
var hostileKeys = []string{
	"certs/", "certs/../escape", "certs/a/../../escape", "certs//abs/escape", "certs/./../escape",
	`certs/a\..\escape`, "certs/..", "certs/x/..", "certs/x/./../../escape", "certs/a//b", "certs/a/",
	"certs/.", "certs/a/./b", "certs/nul\x00byte", "certs/tab\there", "certs/new\nline", "certs/bad\xffutf8",
	"certs/" + strings.Repeat("n", 256), "other/prefix",
}

func TestRelPathRefusesHostileKeys(t *testing.T) {
	for _, k := range hostileKeys {
		if rel, err := RelPath(k, "certs/"); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("%q: accepted as %q (%v)", k, rel, err)
		}
	}
	for k, want := range map[string]string{
		"certs/example.org/fullchain.pem":   "example.org/fullchain.pem",
		"certs/..hidden":                    "..hidden",
		"certs/a b/c,d=e":                   "a b/c,d=e",
		"certs/ünïcode":                     "ünïcode",
		"certs/" + strings.Repeat("n", 255): strings.Repeat("n", 255),
	} {
		if rel, err := RelPath(k, "certs/"); err != nil || rel != want {
			t.Errorf("%q: %q %v, want %q", k, rel, err, want)
		}
	}
}

// FuzzNoEscape: whatever key is written, nothing appears outside the
// materialized directory and cairn's own state directory beside it, even
// when someone planted a symlink to the outside in the published tree.
func FuzzNoEscape(f *testing.F) {
	for _, k := range hostileKeys {
		f.Add(k)
	}
	f.Add("certs/a/b")
	f.Add("certs/link/x")
	f.Fuzz(func(t *testing.T, key string) {
		rel, err := RelPath(key, "certs/")
		if err != nil {
			return
		}
		if path.Clean(rel) != rel || path.IsAbs(rel) || strings.Contains(rel, "\\") {
			t.Fatalf("%q accepted as unclean path %q", key, rel)
		}
		base := t.TempDir()
		outside := filepath.Join(base, "outside")
		if err := os.Mkdir(outside, 0o755); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(base, "m", "certs")
		tree, err := OpenTree(dir, "certs/", 0o644, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		defer tree.Close()
		if _, err := tree.Publish(map[string]Entry{"seed": entry("certs/seed", "x")}); err != nil {
			t.Fatal(err)
		}
		// Someone plants symlinks to the outside where the key's path goes.
		first := strings.SplitN(rel, "/", 2)[0]
		cur := filepath.Join(filepath.Dir(dir), ".certs.cairn", tree.Manifest().Version)
		_ = os.Symlink(outside, filepath.Join(cur, first))
		_ = os.Symlink(outside, filepath.Join(cur, "link"))
		_, _ = tree.Publish(map[string]Entry{rel: entry(key, "evil")})
		entries, err := os.ReadDir(outside)
		if err != nil || len(entries) != 0 {
			t.Fatalf("key %q wrote outside the directory: %v %v", key, entries, err)
		}
		err = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			r, _ := filepath.Rel(base, p)
			switch {
			case r == "." || r == "outside" || r == "m" || r == "m/certs":
			case strings.HasPrefix(r, "m/.certs.cairn"):
			default:
				t.Errorf("key %q: unexpected %s", key, r)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func entry(key, content string) Entry {
	return newEntry(FileMeta{Key: key, Revision: 1}, []byte(content))
}
