package cli

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cairnkv/cairn/client"
)

// maxKeyBytes is the server's key limit (docs/API.md, "Limits").
const maxKeyBytes = 4096

// defaultBatchBytes is the largest transaction body sync sends by default:
// the server takes 2 × --max-value-bytes + 64 KiB, 2 MiB + 64 KiB with the
// default value limit; the 64 KiB are left as margin.
const defaultBatchBytes = 2 << 20

// listPage is how many keys each listing request of sync asks for. The
// server reads the values of a page to hash them: 100 values of the
// largest size (64 MiB) are already a lot of memory for one request.
const listPage = 100

func syncCmd(g *globals, env *Env) *cobra.Command {
	var o syncOptions
	cmd := &cobra.Command{
		Use:   "sync DIR PREFIX",
		Short: "make the keys under PREFIX match the files under DIR",
		Long: `Upload the regular files under DIR to the keys PREFIX + their path relative
to DIR (with / between directories), skipping those whose value already has
the file's SHA-256 (the listing is read with keys_only and hashes: no value
is downloaded). PREFIX must end in "/", so that "pkgs/" never touches
"pkgsfoo". With --delete, keys under PREFIX whose file is gone are deleted;
keys of excluded or skipped paths never are.

Directories are walked; symlinks are neither followed nor uploaded, and
other non-regular files (devices, sockets, FIFOs), files that cannot be
read, names that are not UTF-8 and keys over 4096 bytes are skipped too:
each is reported on stderr and counted in the summary. --exclude GLOB
(repeatable; path.Match syntax) is matched against each path relative to
DIR and against its base name; an excluded directory is not walked.

On a strong keyspace the whole change is one transaction when it fits in
--batch-bytes, so that every node (and every materialized copy) switches
at once. Otherwise, and on eventual keyspaces, it goes in batches in this
order: the uploads in path order, then the deletes in key order, each batch
one transaction of at most --batch-bytes; a file too large for a batch on
its own is a single PUT in its place. If the server refuses a batch as too
large (a lower --max-value-bytes), it is split in two and retried. A failed
batch stops the sync; the error says what was applied before it, and
running sync again finishes the job.

--dry-run lists the changes and changes nothing. On a terminal, a progress
bar on stderr counts the bytes and files uploaded. At the end a summary
says what was done; -o json prints it as JSON (with the planned changes
under --dry-run).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.dir, o.prefix = args[0], args[1]
			if err := o.validate(); err != nil {
				return err
			}
			return runSync(cmd.Context(), g, env, o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.delete, "delete", false, "delete the keys under PREFIX whose file is gone")
	f.BoolVar(&o.dryRun, "dry-run", false, "print what would change, change nothing")
	f.StringArrayVar(&o.excludes, "exclude", nil, "skip paths whose relative path or base name matches this glob (repeatable)")
	f.Int64Var(&o.batchBytes, "batch-bytes", defaultBatchBytes, "the largest transaction body to send (the server takes 2 × its --max-value-bytes + 64 KiB)")
	return cmd
}

type syncOptions struct {
	dir, prefix    string
	delete, dryRun bool
	excludes       []string
	batchBytes     int64
}

func (o *syncOptions) validate() error {
	if o.prefix == "" || !strings.HasSuffix(o.prefix, "/") {
		return usagef("PREFIX %q must end in \"/\" (so that %q does not also match %q)", o.prefix,
			strings.TrimSuffix(o.prefix, "/")+"/", strings.TrimSuffix(o.prefix, "/")+"foo")
	}
	if len(o.prefix) >= maxKeyBytes {
		return usagef("PREFIX is %d bytes; a key is at most %d", len(o.prefix), maxKeyBytes)
	}
	if !utf8.ValidString(o.prefix) {
		return usagef("PREFIX is not valid UTF-8")
	}
	for _, x := range o.excludes {
		if _, err := path.Match(x, ""); err != nil {
			return usagef("--exclude %q: %v", x, err)
		}
	}
	if o.batchBytes < 1024 {
		return usagef("--batch-bytes must be at least 1024")
	}
	return nil
}

// excluded reports whether rel, or a directory above it, matches an
// --exclude glob by its relative path or its base name.
func (o *syncOptions) excluded(rel string) bool {
	if len(o.excludes) == 0 {
		return false
	}
	for i := 0; i <= len(rel); i++ {
		if i < len(rel) && rel[i] != '/' {
			continue
		}
		p := rel[:i]
		for _, x := range o.excludes {
			if ok, _ := path.Match(x, p); ok {
				return true
			}
			if ok, _ := path.Match(x, path.Base(p)); ok {
				return true
			}
		}
	}
	return false
}

// underAny reports whether rel or a directory above it is in set.
func underAny(set map[string]bool, rel string) bool {
	for i := 0; i <= len(rel); i++ {
		if (i == len(rel) || rel[i] == '/') && set[rel[:i]] {
			return true
		}
	}
	return false
}

// localFile is a regular file found under DIR.
type localFile struct {
	rel, path, key string
	size           int64
}

// skippedPath is a path sync did not upload, and why.
type skippedPath struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// syncChange is one planned write.
type syncChange struct {
	Op    string `json:"op"` // put or delete
	Key   string `json:"key"`
	Path  string `json:"path,omitempty"`
	Bytes int64  `json:"bytes,omitempty"`
	file  *localFile
}

// syncSummary is what a sync did (or, dry, would do).
type syncSummary struct {
	DryRun bool   `json:"dry_run"`
	Prefix string `json:"prefix"`
	Mode   string `json:"mode"`
	// Atomic: the whole change was (would be) one transaction.
	Atomic        bool          `json:"atomic"`
	Transactions  int           `json:"transactions"`
	Uploaded      int           `json:"uploaded"`
	UploadedBytes int64         `json:"uploaded_bytes"`
	Deleted       int           `json:"deleted"`
	Unchanged     int           `json:"unchanged"`
	Excluded      int           `json:"excluded"`
	Skipped       []skippedPath `json:"skipped"`
	Revision      int64         `json:"revision,omitempty"`
	// Changes is the plan of a dry run ([] when there is nothing to do).
	Changes *[]syncChange `json:"changes,omitempty"`
	Error   string        `json:"error,omitempty"`
}

func runSync(ctx context.Context, g *globals, env *Env, o syncOptions) error {
	files, skipped, excluded, err := walkDir(o)
	if err != nil {
		return err
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	sum := &syncSummary{DryRun: o.dryRun, Prefix: o.prefix, Excluded: excluded, Mode: "strong"}
	modes, err := prefixMode(ctx, c, o.prefix)
	var ae *client.APIError
	switch {
	case err != nil && !errors.As(err, &ae):
		return err
	case err != nil:
		// The keyspaces cannot be read (an ACL): a transaction works in
		// either mode, so go on as if strong.
		sum.Mode = "unknown"
	case modes.mixed():
		return fmt.Errorf("sync: %q spans keyspaces of different modes (%s); a transaction cannot mix them: sync each keyspace's prefix on its own", o.prefix, modes)
	case modes.eventual():
		sum.Mode = "eventual"
	}
	remote, err := listHashes(ctx, c, o.prefix)
	if err != nil {
		return fmt.Errorf("sync: listing %q: %w", o.prefix, err)
	}

	// What changes: the files whose hash differs, then the deletes.
	var changes []syncChange
	local := make(map[string]bool, len(files))
	kept := make(map[string]bool, len(skipped)) // skipped paths: their keys, and those below them, stay
	for _, s := range skipped {
		kept[s.Path] = true
	}
	for i := range files {
		f := &files[i]
		local[f.key] = true
		h, err := hashFile(f.path)
		if err != nil {
			skipped = append(skipped, skippedPath{f.rel, "cannot be read: " + err.Error()})
			kept[f.rel] = true
			continue
		}
		if remote[f.key] == h {
			sum.Unchanged++
			continue
		}
		changes = append(changes, syncChange{Op: "put", Key: f.key, Path: f.rel, Bytes: f.size, file: f})
	}
	if o.delete {
		var gone []string
		for key := range remote {
			rel := key[len(o.prefix):]
			// The prefix's own key has no file; excluded and skipped paths
			// (an unreadable directory, a symlink) are kept.
			if !local[key] && rel != "" && !o.excluded(rel) && !underAny(kept, rel) {
				gone = append(gone, key)
			}
		}
		slices.Sort(gone)
		for _, key := range gone {
			changes = append(changes, syncChange{Op: "delete", Key: key})
		}
	}
	slices.SortFunc(skipped, func(a, b skippedPath) int { return strings.Compare(a.Path, b.Path) })
	sum.Skipped = skipped
	if sum.Skipped == nil {
		sum.Skipped = []skippedPath{}
	}
	for _, s := range skipped {
		fmt.Fprintf(env.Stderr, "skipped %s: %s\n", s.Path, s.Reason)
	}

	batches := planBatches(changes, o.batchBytes)
	sum.Transactions = len(batches)
	sum.Atomic = len(batches) == 1 && batches[0].txn && sum.Mode != "eventual"
	if o.dryRun {
		if changes == nil {
			changes = []syncChange{}
		}
		sum.Changes = &changes
		for _, ch := range changes {
			if ch.Op == "put" {
				sum.Uploaded++
				sum.UploadedBytes += ch.Bytes
			} else {
				sum.Deleted++
			}
		}
		return printSyncSummary(g, env, sum, nil)
	}

	s := &syncer{c: c, bar: newSyncBar(env, changes)}
	err = s.apply(ctx, batches, sum)
	s.bar.finish()
	sum.Atomic = sum.Atomic && sum.Transactions == 1 // a batch split for the server's limit is not
	return printSyncSummary(g, env, sum, err)
}

// walkDir finds the regular files under o.dir, in path order.
func walkDir(o syncOptions) (files []localFile, skipped []skippedPath, excluded int, err error) {
	root, err := filepath.EvalSymlinks(o.dir) // DIR itself may be a symlink; nothing under it is followed
	if err == nil {
		var fi os.FileInfo
		if fi, err = os.Stat(root); err == nil && !fi.IsDir() {
			return nil, nil, 0, fmt.Errorf("sync: %s is not a directory", o.dir)
		}
	}
	if err != nil {
		return nil, nil, 0, fmt.Errorf("sync: the directory %s: %w", o.dir, err)
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if p == root {
			return err
		}
		relOS, rerr := filepath.Rel(root, p)
		if rerr != nil {
			return rerr
		}
		rel := filepath.ToSlash(relOS)
		if err != nil {
			skipped = append(skipped, skippedPath{rel, "cannot be read: " + err.Error()})
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if o.excluded(rel) {
			excluded++
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		switch t := d.Type(); {
		case d.IsDir():
			return nil
		case t&fs.ModeSymlink != 0:
			skipped = append(skipped, skippedPath{rel, "symlink (not followed)"})
		case !t.IsRegular():
			skipped = append(skipped, skippedPath{rel, "not a regular file (" + t.String() + ")"})
		case !utf8.ValidString(rel):
			skipped = append(skipped, skippedPath{strings.ToValidUTF8(rel, "\uFFFD"), "name is not valid UTF-8"})
		case len(o.prefix)+len(rel) > maxKeyBytes:
			skipped = append(skipped, skippedPath{rel, fmt.Sprintf("key would be %d bytes, over %d", len(o.prefix)+len(rel), maxKeyBytes)})
		default:
			info, ierr := d.Info()
			if ierr != nil {
				skipped = append(skipped, skippedPath{rel, "cannot be read: " + ierr.Error()})
				return nil
			}
			files = append(files, localFile{rel: rel, path: p, key: o.prefix + rel, size: info.Size()})
		}
		return nil
	})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("sync: walking %s: %w", o.dir, err)
	}
	// Keys sort by bytes, which is not the walk's order ("a.txt" < "a/b").
	slices.SortFunc(files, func(a, b localFile) int { return strings.Compare(a.rel, b.rel) })
	return files, skipped, excluded, nil
}

// openRegular opens p for reading only if it is (still) a regular file:
// not a symlink, FIFO or device put there since the walk.
func openRegular(p string) (*os.File, error) {
	before, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !before.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is no longer a regular file", p)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	after, err := f.Stat()
	if err != nil || !os.SameFile(before, after) {
		f.Close()
		return nil, fmt.Errorf("%s changed while it was opened", p)
	}
	return f, nil
}

func hashFile(p string) (string, error) {
	f, err := openRegular(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// keyLister is what listHashes reads keys through (*client.Client).
type keyLister interface {
	List(ctx context.Context, prefix string, o client.ListOptions) (*client.ListResult, error)
}

// listHashes reads the keys under prefix with the SHA-256 of their values
// (not the values), page by page.
func listHashes(ctx context.Context, c keyLister, prefix string) (map[string]string, error) {
	out := map[string]string{}
	after := ""
	for {
		res, err := c.List(ctx, prefix, client.ListOptions{After: after, Limit: listPage, KeysOnly: true, Hashes: true})
		if err != nil {
			return nil, err
		}
		for _, it := range res.Items {
			if it.Hash == "" {
				return nil, fmt.Errorf("the server sent no hash for %q: it does not support ?hashes=true", it.Key)
			}
			out[it.Key] = it.Hash
		}
		if !res.More || len(res.Items) == 0 {
			return out, nil
		}
		after = res.Items[len(res.Items)-1].Key
	}
}

// batch is one step of a sync: a transaction of changes, or (txn false) a
// single PUT of a file too large for a transaction of the batch size.
type batch struct {
	txn     bool
	changes []syncChange
}

// opBytes bounds the size of a change in a transaction body.
func opBytes(ch syncChange) int64 {
	k, _ := json.Marshal(ch.Key)
	n := int64(len(k)) + 48 // {"op":"delete","key":…,"value_base64":""},
	if ch.Op == "put" {
		n += int64(base64.StdEncoding.EncodedLen(int(ch.Bytes)))
	}
	return n
}

// txnOverhead bounds the body around the operations: {"success":[…]}.
const txnOverhead = 32

// planBatches cuts changes (puts in path order, then deletes) into
// transactions of at most limit bytes, in order.
func planBatches(changes []syncChange, limit int64) []batch {
	var out []batch
	var cur []syncChange
	size := int64(txnOverhead)
	flush := func() {
		if len(cur) > 0 {
			out = append(out, batch{txn: true, changes: cur})
		}
		cur, size = nil, txnOverhead
	}
	for _, ch := range changes {
		n := opBytes(ch)
		if n+txnOverhead > limit {
			flush()
			out = append(out, batch{changes: []syncChange{ch}})
			continue
		}
		if size+n > limit {
			flush()
		}
		cur = append(cur, ch)
		size += n
	}
	flush()
	return out
}

type syncer struct {
	c   *client.Client
	bar *syncBar
}

// apply runs the batches in order, counting in sum what was applied; on a
// failure the error says what had been applied before it.
func (s *syncer) apply(ctx context.Context, batches []batch, sum *syncSummary) error {
	sum.Transactions = 0
	for i, b := range batches {
		if err := s.run(ctx, b, sum); err != nil {
			what := "nothing was applied"
			if sum.Uploaded+sum.Deleted > 0 {
				what = fmt.Sprintf("applied before it: %s uploaded, %s deleted, in %s; run sync again to finish",
					plural(int64(sum.Uploaded), "file"), plural(int64(sum.Deleted), "key"), plural(int64(sum.Transactions), "transaction"))
			}
			return fmt.Errorf("sync: step %d of %d failed (%w); %s", i+1, len(batches), err, what)
		}
	}
	return nil
}

// run applies one batch; a transaction the server finds too large is split
// in two, in order.
func (s *syncer) run(ctx context.Context, b batch, sum *syncSummary) error {
	if !b.txn {
		ch := b.changes[0]
		v, err := readFile(ch.file)
		if err != nil {
			return err
		}
		res, err := s.c.PutWithResult(ctx, ch.Key, v, client.PutOptions{})
		if err != nil {
			return fmt.Errorf("uploading %s (%d bytes): %w", ch.Path, len(v), err)
		}
		sum.Transactions++
		sum.Uploaded++
		sum.UploadedBytes += int64(len(v))
		sum.Revision = max(sum.Revision, res.Revision)
		s.bar.add(1, int64(len(v)))
		return nil
	}
	body, files, n, err := txnBody(b.changes)
	if err != nil {
		return err
	}
	res, err := s.c.Txn(ctx, body)
	var ae *client.APIError
	if errors.As(err, &ae) && ae.StatusCode == http.StatusRequestEntityTooLarge && len(b.changes) > 1 {
		half := len(b.changes) / 2
		if err := s.run(ctx, batch{txn: true, changes: b.changes[:half]}, sum); err != nil {
			return err
		}
		return s.run(ctx, batch{txn: true, changes: b.changes[half:]}, sum)
	}
	if err != nil {
		return err
	}
	if !res.Succeeded { // there is no condition: it cannot fail, unless the server changed
		return errors.New("the transaction did not succeed")
	}
	sum.Transactions++
	sum.Uploaded += files
	sum.UploadedBytes += n
	sum.Deleted += len(b.changes) - files
	sum.Revision = max(sum.Revision, res.Revision)
	s.bar.add(files, n)
	return nil
}

// txnOp is an operation of POST /v1/txn (docs/API.md, "Transactions").
type txnOp struct {
	Op          string  `json:"op"`
	Key         string  `json:"key"`
	ValueBase64 *string `json:"value_base64,omitempty"`
}

// txnBody reads the files of a batch now (not before: only one batch is
// in memory at a time) and encodes the transaction.
func txnBody(changes []syncChange) (body []byte, files int, n int64, err error) {
	ops := make([]txnOp, 0, len(changes))
	for _, ch := range changes {
		op := txnOp{Op: ch.Op, Key: ch.Key}
		if ch.Op == "put" {
			v, err := readFile(ch.file)
			if err != nil {
				return nil, 0, 0, err
			}
			s := base64.StdEncoding.EncodeToString(v)
			op.ValueBase64 = &s
			files++
			n += int64(len(v))
		}
		ops = append(ops, op)
	}
	body, err = json.Marshal(struct {
		Success []txnOp `json:"success"`
	}{ops})
	return body, files, n, err
}

func readFile(f *localFile) ([]byte, error) {
	fh, err := openRegular(f.path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.rel, err)
	}
	defer fh.Close()
	v, err := io.ReadAll(fh)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.rel, err)
	}
	return v, nil
}

func printSyncSummary(g *globals, env *Env, sum *syncSummary, err error) error {
	if g.json() {
		if err != nil {
			sum.Error = err.Error()
		}
		if perr := printJSON(env.Stdout, sum); perr != nil && err == nil {
			return perr
		}
		return err
	}
	if sum.DryRun {
		for _, ch := range *sum.Changes {
			if ch.Op == "put" {
				fmt.Fprintf(env.Stdout, "put %s (%d bytes)\n", ch.Key, ch.Bytes)
			} else {
				fmt.Fprintf(env.Stdout, "delete %s\n", ch.Key)
			}
		}
	}
	line := fmt.Sprintf("uploaded %s (%d bytes), deleted %d, unchanged %d, skipped %d",
		plural(int64(sum.Uploaded), "file"), sum.UploadedBytes, sum.Deleted, sum.Unchanged, len(sum.Skipped))
	if sum.DryRun {
		line = "dry run, would have " + line
	}
	if len(sum.Skipped) > 0 {
		line += " (symlinks, non-regular or unreadable files: listed on stderr)"
	}
	if sum.Excluded > 0 {
		line += fmt.Sprintf(", excluded %d", sum.Excluded)
	}
	fmt.Fprintln(env.Stdout, line)
	if sum.Transactions > 0 {
		var how string
		switch {
		case sum.Atomic:
			how = "in 1 transaction (atomic)"
		case sum.Mode == "eventual":
			how = fmt.Sprintf("in %s (an eventual keyspace: not atomic)", plural(int64(sum.Transactions), "step"))
		case sum.Transactions > 1:
			how = fmt.Sprintf("in %d steps (uploads in path order, then deletes; not atomic)", sum.Transactions)
		default:
			how = "in 1 step"
		}
		if sum.Revision > 0 {
			how += fmt.Sprintf(", revision %d", sum.Revision)
		}
		if sum.DryRun {
			how = "would go " + how
		}
		fmt.Fprintln(env.Stdout, how)
	}
	return err
}

// syncBar is the progress bar on stderr, when stderr is a terminal.
type syncBar struct {
	bar          *progressbar.ProgressBar
	files, total int
}

func newSyncBar(env *Env, changes []syncChange) *syncBar {
	b := &syncBar{}
	if !stderrIsTerminal(env) {
		return b
	}
	var bytes int64
	for _, ch := range changes {
		if ch.Op == "put" {
			bytes += ch.Bytes
			b.total++
		}
	}
	if b.total == 0 {
		return b
	}
	b.bar = progressbar.NewOptions64(bytes, progressbar.OptionSetWriter(env.Stderr), progressbar.OptionShowBytes(true),
		progressbar.OptionSetDescription(b.describe()), progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish())
	return b
}

func (b *syncBar) describe() string { return fmt.Sprintf("sync %d/%d files", b.files, b.total) }

func (b *syncBar) add(files int, bytes int64) {
	if b.bar == nil {
		return
	}
	b.files += files
	b.bar.Describe(b.describe())
	_ = b.bar.Add64(bytes)
}

func (b *syncBar) finish() {
	if b.bar != nil {
		_ = b.bar.Finish()
	}
}

// stderrIsTerminal reports whether progress bars belong on stderr.
func stderrIsTerminal(env *Env) bool {
	if env.StderrIsTerminal {
		return true
	}
	f, ok := env.Stderr.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
