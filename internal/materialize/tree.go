package materialize

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Tree is one materialized directory on disk. For a directory DIR (say
// /etc/cairn/certs) it is:
//
//	PARENT/NAME              a symlink to .NAME.cairn/vN: what readers open
//	PARENT/.NAME.cairn/      cairn's own entries, nothing else writes here
//	    vN/                  one complete version of the tree
//	    vN.json              its manifest: the files cairn wrote, and from which key version
//	    hook-pending.json    keys changed since the on_change hook last succeeded
//
// A new version is built beside the current one (unchanged files are hard
// links, so a version costs only what changed), fsynced, and published by
// renaming a new symlink over NAME: a reader that opens NAME/a and then
// NAME/b sees both from the same version unless a publish happens between
// the two opens; a reader that resolves NAME once (readlink -f) sees one
// version whole until it is removed. Only the current and the previous
// version are kept. Files in a version that the manifest does not name
// were put there by someone else: they are carried into every new version.
type Tree struct {
	dir       string // the published symlink
	parent    string
	base      string
	state     string // PARENT/.NAME.cairn
	root      *os.Root
	fileMode  fs.FileMode
	dirMode   fs.FileMode
	cur       string   // current version, "" before the first publish
	man       Manifest // current version's manifest
	pending   hookPending
	published func() // test hook: after the swap, before old versions go
}

// Manifest lists the files cairn wrote into one version of a tree.
type Manifest struct {
	Prefix  string              `json:"prefix"`
	Version string              `json:"version"`
	Files   map[string]FileMeta `json:"files"` // by path relative to the directory
}

// FileMeta is one file cairn wrote: the key and key version it holds.
type FileMeta struct {
	Key       string `json:"key"`
	SHA256    string `json:"sha256"`
	Size      int64  `json:"size"`
	Revision  int64  `json:"revision,omitempty"`  // strong keys: the key's mod revision
	Timestamp string `json:"timestamp,omitempty"` // eventual keys: the version's stamp
	Origin    string `json:"origin,omitempty"`
}

// sameVersion reports whether m and o hold the same version of one key.
func (m FileMeta) sameVersion(o FileMeta) bool {
	return m.Key == o.Key && m.Revision == o.Revision && m.Timestamp == o.Timestamp && m.Origin == o.Origin
}

// MissingError is a publish that needed a current file which is gone
// (someone removed it): publish again with that entry's content.
type MissingError struct {
	Rel, Key string
	Err      error
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("materialize: %s (key %q) is missing from the current version: %v", e.Rel, e.Key, e.Err)
}

func (e *MissingError) Unwrap() error { return e.Err }

// Entry is one file of a version to publish: its metadata and, when it is
// not already in the current version, its content, given or loaded while
// the version is built (so a large tree is never all in memory).
type Entry struct {
	Meta    FileMeta
	Content []byte
	// Load, when Content is nil, returns the file's content and metadata
	// (ErrGone: leave the file out). Neither: link the current version's
	// file of the same path.
	Load func() (FileMeta, []byte, error)
}

// ErrGone is what an Entry's Load returns for a file that no longer exists.
var ErrGone = errors.New("materialize: gone")

type hookPending struct {
	Keys []string `json:"keys"`
	Gen  uint64   `json:"gen"`
}

const (
	stateSuffix = ".cairn"
	pendingFile = "hook-pending.json"
)

// OpenTree opens (creating it when needed) the tree published at dir.
// An existing dir that is a real directory not made by cairn is adopted:
// its files become the first version, as files cairn did not write, and
// dir becomes the symlink (it is missing for an instant while that
// happens, once). A dir that is a symlink somewhere else is refused.
func OpenTree(dir, prefix string, fileMode, dirMode fs.FileMode) (*Tree, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("materialize: directory %q is not an absolute path", dir)
	}
	dir = filepath.Clean(dir)
	t := &Tree{dir: dir, parent: filepath.Dir(dir), base: filepath.Base(dir), fileMode: fileMode, dirMode: dirMode}
	t.state = filepath.Join(t.parent, "."+t.base+stateSuffix)
	if err := os.MkdirAll(t.parent, dirMode); err != nil {
		return nil, fmt.Errorf("materialize: %w", err)
	}
	if err := os.Mkdir(t.state, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("materialize: %w", err)
	}
	root, err := os.OpenRoot(t.state)
	if err != nil {
		return nil, fmt.Errorf("materialize: %w", err)
	}
	t.root = root
	if err := t.load(prefix); err != nil {
		root.Close()
		return nil, err
	}
	return t, nil
}

// Close releases the tree's handle on its state directory.
func (t *Tree) Close() error { return t.root.Close() }

// Dir is the published directory.
func (t *Tree) Dir() string { return t.dir }

// Manifest is the current version's manifest (do not modify it).
func (t *Tree) Manifest() Manifest { return t.man }

func (t *Tree) load(prefix string) error {
	t.man = Manifest{Prefix: prefix, Files: map[string]FileMeta{}}
	fi, err := os.Lstat(t.dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("materialize: %w", err)
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(t.dir)
		if err != nil {
			return fmt.Errorf("materialize: %w", err)
		}
		ver, ok := strings.CutPrefix(target, "."+t.base+stateSuffix+"/")
		if !ok || !validVersion(ver) {
			return fmt.Errorf("materialize: %s is a symlink to %q, which cairn did not make; remove it or choose another directory", t.dir, target)
		}
		t.cur = ver
	case fi.IsDir():
		if err := t.adopt(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("materialize: %s exists and is not a directory", t.dir)
	}
	if t.cur != "" {
		b, err := t.root.ReadFile(t.cur + ".json")
		switch {
		case err == nil:
			var m Manifest
			if err := json.Unmarshal(b, &m); err != nil {
				return fmt.Errorf("materialize: manifest %s: %w", filepath.Join(t.state, t.cur+".json"), err)
			}
			if m.Files == nil {
				m.Files = map[string]FileMeta{}
			}
			m.Prefix, m.Version = prefix, t.cur
			t.man = m
		case errors.Is(err, fs.ErrNotExist):
			// An adopted directory: every file in it is someone else's.
			t.man.Version = t.cur
		default:
			return fmt.Errorf("materialize: %w", err)
		}
	}
	if b, err := t.root.ReadFile(pendingFile); err == nil {
		_ = json.Unmarshal(b, &t.pending)
	}
	t.removeOld()
	return nil
}

// adopt turns a directory someone else made into the first version.
func (t *Tree) adopt() error {
	entries, err := os.ReadDir(t.dir)
	if err != nil {
		return fmt.Errorf("materialize: %w", err)
	}
	if len(entries) == 0 {
		if err := os.Remove(t.dir); err != nil {
			return fmt.Errorf("materialize: %w", err)
		}
		return nil
	}
	ver := t.newVersionName()
	if err := os.Rename(t.dir, filepath.Join(t.state, ver)); err != nil {
		return fmt.Errorf("materialize: adopting %s: %w", t.dir, err)
	}
	if err := t.swap(ver); err != nil {
		return err
	}
	t.cur = ver
	return nil
}

func validVersion(v string) bool {
	n, ok := strings.CutPrefix(v, "v")
	_, err := strconv.ParseUint(n, 10, 64)
	return ok && err == nil
}

func (t *Tree) newVersionName() string {
	for n := time.Now().UnixNano(); ; n++ {
		v := "v" + strconv.FormatInt(n, 10)
		if _, err := t.root.Lstat(v); errors.Is(err, fs.ErrNotExist) && v > t.cur {
			return v
		}
	}
}

// Publish makes target the tree's content, as one new version, and
// returns the keys whose file appeared, changed or went away. Files the
// current manifest does not name are carried over unless a target path
// needs their place. When nothing would change on disk it only records
// target's metadata.
func (t *Tree) Publish(target map[string]Entry) (changed []string, err error) {
	lazy := false
	for _, e := range target {
		lazy = lazy || (e.Content == nil && e.Load != nil)
	}
	if !lazy && t.cur != "" {
		if changed = t.diff(target); len(changed) == 0 {
			next := t.manifestOf(t.cur, target)
			if err := t.writeJSON(t.cur+".json", next); err != nil {
				return nil, err
			}
			t.man = next
			return nil, nil
		}
	}
	ver := t.newVersionName()
	if err := t.build(ver, target); err != nil {
		_ = t.root.RemoveAll(ver)
		return nil, err
	}
	changed = t.diff(target)
	next := t.manifestOf(ver, target)
	if err := t.writeJSON(ver+".json", next); err != nil {
		_ = t.root.RemoveAll(ver)
		return nil, err
	}
	if err := t.swap(ver); err != nil {
		_ = t.root.RemoveAll(ver)
		_ = t.root.Remove(ver + ".json")
		return nil, err
	}
	t.cur, t.man = ver, next
	if t.published != nil {
		t.published()
	}
	t.removeOld()
	return changed, nil
}

func (t *Tree) manifestOf(ver string, target map[string]Entry) Manifest {
	m := Manifest{Prefix: t.man.Prefix, Version: ver, Files: make(map[string]FileMeta, len(target))}
	for rel, e := range target {
		m.Files[rel] = e.Meta
	}
	return m
}

// diff lists the keys whose file differs between the current version and target.
func (t *Tree) diff(target map[string]Entry) []string {
	var keys []string
	for rel, e := range target {
		if old, ok := t.man.Files[rel]; !ok || old.SHA256 != e.Meta.SHA256 || old.Key != e.Meta.Key {
			keys = append(keys, e.Meta.Key)
		}
	}
	for rel, m := range t.man.Files {
		if _, ok := target[rel]; !ok {
			keys = append(keys, m.Key)
		}
	}
	sort.Strings(keys)
	return slices.Compact(keys)
}

// build writes version ver: target's files first (into an empty
// directory, so no entry there is anyone else's), then the current
// version's foreign files where they still fit, then fsyncs it all. It
// replaces each loaded entry of target by what was written (content
// dropped) and removes the entries that are gone.
func (t *Tree) build(ver string, target map[string]Entry) error {
	if err := t.root.Mkdir(ver, t.dirMode); err != nil {
		return fmt.Errorf("materialize: %w", err)
	}
	rels := make([]string, 0, len(target))
	for rel := range target {
		rels = append(rels, rel)
	}
	sort.Strings(rels)
	dirs := map[string]bool{ver: true}
	mkdirs := func(rel string) error {
		d := path.Dir(path.Join(ver, rel))
		if dirs[d] {
			return nil
		}
		if err := t.root.MkdirAll(d, t.dirMode); err != nil {
			return err
		}
		for ; d != ver && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
		return nil
	}
	for _, rel := range rels {
		e := target[rel]
		if e.Content == nil && e.Load != nil {
			meta, b, err := e.Load()
			if errors.Is(err, ErrGone) {
				delete(target, rel)
				continue
			}
			if err != nil {
				return err
			}
			e = newEntry(meta, b)
		}
		if err := mkdirs(rel); err != nil {
			return fmt.Errorf("materialize: %s: %w", rel, err)
		}
		name := path.Join(ver, rel)
		if e.Content == nil {
			if t.cur == "" {
				return fmt.Errorf("materialize: %s: no content and no current version", rel)
			}
			if err := t.root.Link(path.Join(t.cur, rel), name); err != nil {
				return &MissingError{Rel: rel, Key: e.Meta.Key, Err: err}
			}
			continue
		}
		if err := t.writeFile(name, e.Content, t.fileMode); err != nil {
			return fmt.Errorf("materialize: %s: %w", rel, err)
		}
		target[rel] = Entry{Meta: e.Meta}
	}
	if t.cur != "" {
		if err := t.carryForeign(ver, target, mkdirs); err != nil {
			return err
		}
	}
	for d := range dirs {
		if err := t.syncDir(d); err != nil {
			return err
		}
	}
	return t.syncDir(".")
}

// carryForeign links the current version's files that cairn did not write
// into ver, where no target file or directory is in the way.
func (t *Tree) carryForeign(ver string, target map[string]Entry, mkdirs func(string) error) error {
	return fs.WalkDir(t.root.FS(), t.cur, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil // an unreadable foreign corner is not worth failing a publish for
		}
		rel := strings.TrimPrefix(p, t.cur+"/")
		if _, ours := t.man.Files[rel]; ours {
			return nil
		}
		if _, ours := target[rel]; ours {
			return nil
		}
		if mkdirs(rel) != nil {
			return nil // a target file holds a parent's name
		}
		name := path.Join(ver, rel)
		if d.Type()&fs.ModeSymlink != 0 {
			if to, err := t.root.Readlink(p); err == nil {
				_ = t.root.Symlink(to, name)
			}
			return nil
		}
		_ = t.root.Link(p, name) // a target directory in the way: the foreign file yields
		return nil
	})
}

func (t *Tree) writeFile(name string, b []byte, mode fs.FileMode) error {
	f, err := t.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(mode) // not narrowed by the umask
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (t *Tree) syncDir(name string) error {
	f, err := t.root.Open(name)
	if err != nil {
		return fmt.Errorf("materialize: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("materialize: fsync %s: %w", name, err)
	}
	return nil
}

// writeJSON replaces name in the state directory atomically and durably.
func (t *Tree) writeJSON(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := name + ".tmp"
	_ = t.root.Remove(tmp)
	if err := t.writeFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("materialize: %w", err)
	}
	if err := t.root.Rename(tmp, name); err != nil {
		return fmt.Errorf("materialize: %w", err)
	}
	return t.syncDir(".")
}

// swap points the published symlink at version ver, atomically.
func (t *Tree) swap(ver string) error {
	tmp := filepath.Join(t.parent, "."+t.base+stateSuffix+"-swap")
	_ = os.Remove(tmp)
	if err := os.Symlink("."+t.base+stateSuffix+"/"+ver, tmp); err != nil {
		return fmt.Errorf("materialize: %w", err)
	}
	if err := os.Rename(tmp, t.dir); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("materialize: publishing %s: %w", t.dir, err)
	}
	d, err := os.Open(t.parent)
	if err != nil {
		return fmt.Errorf("materialize: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("materialize: fsync %s: %w", t.parent, err)
	}
	return nil
}

// removeOld deletes every version but the current and the one before it,
// and what an interrupted publish left behind.
func (t *Tree) removeOld() {
	entries, err := fs.ReadDir(t.root.FS(), ".")
	if err != nil {
		return
	}
	var vers []string
	for _, e := range entries {
		name := e.Name()
		switch v, _ := strings.CutSuffix(name, ".json"); {
		case strings.HasSuffix(name, ".tmp"):
			_ = t.root.Remove(name)
		case validVersion(v) && v <= t.cur && !slices.Contains(vers, v):
			vers = append(vers, v)
		case validVersion(v) && v > t.cur:
			_ = t.root.RemoveAll(name) // built but never published
		}
	}
	sort.Strings(vers)
	for len(vers) > 2 {
		_ = t.root.RemoveAll(vers[0])
		_ = t.root.Remove(vers[0] + ".json")
		vers = vers[1:]
	}
}

// AddPending records keys as changed and not yet seen by the hook.
func (t *Tree) AddPending(keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	p := hookPending{Keys: append(slices.Clone(t.pending.Keys), keys...), Gen: t.pending.Gen + 1}
	sort.Strings(p.Keys)
	p.Keys = slices.Compact(p.Keys)
	if err := t.writeJSON(pendingFile, p); err != nil {
		return err
	}
	t.pending = p
	return nil
}

// Pending returns the keys the hook has not yet run for, and the
// generation to pass to ClearPending once it has.
func (t *Tree) Pending() ([]string, uint64) { return slices.Clone(t.pending.Keys), t.pending.Gen }

// ClearPending forgets the pending keys if nothing was added since gen.
func (t *Tree) ClearPending(gen uint64) error {
	if t.pending.Gen != gen || len(t.pending.Keys) == 0 {
		return nil
	}
	if err := t.root.Remove(pendingFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("materialize: %w", err)
	}
	t.pending = hookPending{Gen: gen}
	return t.syncDir(".")
}

// newEntry is a file with content b; meta gets its hash and size.
func newEntry(meta FileMeta, b []byte) Entry {
	if b == nil {
		b = []byte{}
	}
	sum := sha256.Sum256(b)
	meta.SHA256, meta.Size = hex.EncodeToString(sum[:]), int64(len(b))
	return Entry{Meta: meta, Content: b}
}
