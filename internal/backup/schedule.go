package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	pathpkg "path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/cairnkv/cairn/internal/backup/snapfile"
)

// Scheduled backups: the leader saves a snapshot into a target every
// interval, named by time and revision, and keeps the newest `retain`.
// Only the leader takes them (one per interval in the cluster, not one
// per node); a leader that changes hands the schedule to the next one,
// which takes its first backup one interval after it became leader at the
// latest.

// Target is where scheduled backups go. Each kind lives in its own
// package and registers its URL scheme (RegisterScheme); file:// is built
// in.
type Target interface {
	// Put stores a backup under name, from r (an *os.File from Schedule,
	// so a target can learn the size and retry); a failed Put leaves
	// nothing under name. ctx ends it (a server shutting down).
	Put(ctx context.Context, name string, r io.Reader) error
	// List returns the backups there with their sizes, any order; objects
	// whose names ParseName refuses are left out.
	List() ([]Object, error)
	// Open reads one backup back (restore, backup list --verify); a
	// missing one is an error that wraps fs.ErrNotExist.
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	Delete(name string) error
	// String is the target's URL, without secrets.
	String() string
}

// Object is one backup in a target, as listed.
type Object struct {
	Name  string
	Bytes int64
}

var schemes = map[string]func(raw string) (Target, error){}

// RegisterScheme makes ParseTarget open scheme:// URLs with open (which
// gets the whole URL). Backends call it from init, the way database/sql
// drivers register; a program links the ones it wants (internal/cli
// imports internal/backup/s3), and package backup depends on none of them.
func RegisterScheme(scheme string, open func(raw string) (Target, error)) {
	if _, dup := schemes[scheme]; dup || scheme == "file" {
		panic("backup: scheme " + scheme + " registered twice")
	}
	schemes[scheme] = open
}

// ParseTarget parses a backup target URL: file:///path (an absolute
// directory), or a registered scheme (s3://bucket/prefix?…, package
// internal/backup/s3).
func ParseTarget(raw string) (Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("backup: target: %w", err) // url.Error redacts a password
	}
	switch open, ok := schemes[u.Scheme]; {
	case u.Scheme == "file":
		if u.Host != "" || !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("backup: target %q: want file:///absolute/directory", u.Redacted())
		}
		return &FileTarget{Dir: filepath.Clean(u.Path)}, nil
	case ok:
		return open(raw)
	case u.Scheme == "s3":
		return nil, fmt.Errorf("backup: target %q: this program is built without s3:// targets (link internal/backup/s3)", u.Redacted())
	default:
		return nil, fmt.Errorf("backup: target %q: want file:///path or s3://bucket/prefix", u.Redacted())
	}
}

// FileTarget is a directory of backup files.
type FileTarget struct{ Dir string }

func (f *FileTarget) String() string { return "file://" + f.Dir }

// Put writes name.part, fsyncs it and renames it into place.
func (f *FileTarget) Put(_ context.Context, name string, r io.Reader) error {
	if err := os.MkdirAll(f.Dir, 0o750); err != nil {
		return err
	}
	path := filepath.Join(f.Dir, name)
	part := path + ".part"
	out, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, r)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(part, path)
	}
	if err != nil {
		os.Remove(part)
		return err
	}
	if d, err := os.Open(f.Dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// List returns the backup files in the directory.
func (f *FileTarget) List() ([]Object, error) {
	entries, err := os.ReadDir(f.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Object
	for _, e := range entries {
		if _, ok := ParseName(e.Name()); ok && e.Type().IsRegular() {
			o := Object{Name: e.Name()}
			if fi, err := e.Info(); err == nil {
				o.Bytes = fi.Size()
			}
			out = append(out, o)
		}
	}
	return out, nil
}

// Open opens one backup file.
func (f *FileTarget) Open(_ context.Context, name string) (io.ReadCloser, error) {
	return os.Open(f.Path(name))
}

// Delete removes one backup file.
func (f *FileTarget) Delete(name string) error { return os.Remove(filepath.Join(f.Dir, name)) }

// Path is where a backup of the target is, for restore.
func (f *FileTarget) Path(name string) string { return filepath.Join(f.Dir, name) }

var nameRE = regexp.MustCompile(`^cairn-(\d{8}T\d{6}Z)-r(\d+)\.snapshot(\.age)?$`)

// Name is the file name of a backup taken at t of revision rev:
// cairn-20261201T120000Z-r1234.snapshot (sorts by time); an encrypted one
// ends in .snapshot.age.
func Name(t time.Time, rev int64) string {
	return fmt.Sprintf("cairn-%s-r%d.snapshot", t.UTC().Format("20060102T150405Z"), rev)
}

// Named is a backup's name read back.
type Named struct {
	Name     string    `json:"name"`
	Time     time.Time `json:"time"`
	Revision int64     `json:"revision"`
	// Bytes is the size the target listed (ListBackups).
	Bytes int64 `json:"bytes"`
}

// ParseName reads a name Name made.
func ParseName(name string) (Named, bool) {
	m := nameRE.FindStringSubmatch(name)
	if m == nil {
		return Named{}, false
	}
	t, err := time.Parse("20060102T150405Z", m[1])
	if err != nil {
		return Named{}, false
	}
	rev, err := strconv.ParseInt(m[2], 10, 64)
	if err != nil {
		return Named{}, false
	}
	return Named{Name: name, Time: t, Revision: rev}, true
}

// ListBackups returns the target's backups, oldest first.
func ListBackups(t Target) ([]Named, error) {
	objs, err := t.List()
	if err != nil {
		return nil, err
	}
	var out []Named
	for _, o := range objs {
		if b, ok := ParseName(o.Name); ok {
			b.Bytes = o.Bytes
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Schedule takes the backups.
type Schedule struct {
	Target   Target
	Interval time.Duration
	Retain   int // 0: keep every one
	// Save writes a snapshot to w.
	Save func(ctx context.Context, w io.Writer) (*snapfile.Info, error)
	// IsLeader says whether this node takes the backups now.
	IsLeader func() bool
	Log      *slog.Logger
	// Recipients, when set, seal every backup for them (age): the target
	// never holds plaintext, and the name ends in .snapshot.age.
	Recipients []age.Recipient
	// now is time.Now, for tests.
	now func() time.Time
	// stats are the scheduled backups' metrics (metrics.go).
	stats scheduleStats
}

// Run takes a backup every Interval while this node leads, until ctx ends.
func (s *Schedule) Run(ctx context.Context) {
	if s.now == nil {
		s.now = time.Now
	}
	s.loadNewest()
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.IsLeader() {
			continue
		}
		started := s.now()
		_, err := s.Once(ctx)
		if ctx.Err() == nil {
			s.recordAttempt(started, err)
		}
		if err != nil && ctx.Err() == nil {
			s.Log.Error("scheduled backup failed", "target", s.Target.String(), "err", err)
		}
	}
}

// Once takes one backup now and applies the retention; it returns the
// backup's name.
func (s *Schedule) Once(ctx context.Context) (string, error) {
	if s.now == nil {
		s.now = time.Now
	}
	// Into a temporary file first: the name carries the revision, known
	// once the snapshot is taken.
	tmp, err := os.CreateTemp("", "cairn-backup-*.snapshot")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	started := s.now()
	var w io.Writer = tmp
	var sealed io.WriteCloser
	if len(s.Recipients) > 0 {
		if sealed, err = Encrypt(tmp, s.Recipients); err != nil {
			return "", err
		}
		w = sealed
	}
	info, err := s.Save(ctx, w)
	if err != nil {
		return "", err
	}
	if sealed != nil {
		if err := sealed.Close(); err != nil {
			return "", err
		}
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	name := Name(started, info.Revision)
	if sealed != nil {
		name += ".age"
	}
	if err := s.Target.Put(ctx, name, tmp); err != nil {
		return "", fmt.Errorf("storing %s in %s: %w", name, s.Target, err)
	}
	s.Log.Info("backup taken", "target", s.Target.String(), "name", name, "revision", info.Revision,
		"strong_keys", info.StrongKeys, "eventual_keys", info.EventualKeys, "took", s.now().Sub(started).Round(time.Millisecond))
	if s.Retain > 0 {
		all, err := ListBackups(s.Target)
		if err != nil {
			return name, fmt.Errorf("listing %s for retention: %w", s.Target, err)
		}
		for len(all) > s.Retain {
			if err := s.Target.Delete(all[0].Name); err != nil {
				return name, fmt.Errorf("removing %s: %w", all[0].Name, err)
			}
			s.Log.Info("old backup removed", "target", s.Target.String(), "name", all[0].Name)
			all = all[1:]
		}
	}
	return name, nil
}

// Fetch returns a local path of what a restore names: a file path,
// file:///dir/NAME, or a backup in another target (s3://bucket/prefix/NAME?…),
// which it downloads whole into a temporary file first; done removes that
// file. The caller verifies the file before it writes anything, as for a
// local one.
func Fetch(ctx context.Context, what string) (path string, done func(), err error) {
	nothing := func() {}
	if !strings.Contains(what, "://") {
		return what, nothing, nil
	}
	u, err := url.Parse(what)
	if err != nil {
		return "", nil, fmt.Errorf("backup: %w", err)
	}
	if u.Scheme == "file" {
		if u.Host != "" || !filepath.IsAbs(u.Path) {
			return "", nil, fmt.Errorf("backup: %q: want a file path or file:///path", u.Redacted())
		}
		return u.Path, nothing, nil
	}
	name := pathpkg.Base(u.Path)
	if u.Path == "" || strings.HasSuffix(u.Path, "/") || name == "/" || name == "." {
		return "", nil, fmt.Errorf("backup: %q names a target, not one backup in it: add /NAME (see cairn backup list)", u.Redacted())
	}
	dir := *u
	dir.Path = pathpkg.Dir(u.Path)
	dir.RawPath = ""
	t, err := ParseTarget(dir.String())
	if err != nil {
		return "", nil, err
	}
	r, err := t.Open(ctx, name)
	if err != nil {
		return "", nil, fmt.Errorf("backup: %s in %s: %w", name, t, err)
	}
	defer r.Close()
	f, err := os.CreateTemp("", "cairn-restore-*.snapshot")
	if err != nil {
		return "", nil, fmt.Errorf("backup: %w", err)
	}
	done = func() { os.Remove(f.Name()) }
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		done()
		return "", nil, fmt.Errorf("backup: downloading %s from %s: %w", name, t, err)
	}
	return f.Name(), done, nil
}
