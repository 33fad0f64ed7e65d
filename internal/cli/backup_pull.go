package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/backup"
)

func backupPullCmd(g *globals, env *Env) *cobra.Command {
	var (
		o  pullOptions
		at string
	)
	cmd := &cobra.Command{
		Use:   "pull BUCKET_URL",
		Short: "copy a keyspace's mirror (s3://bucket/prefix?…) back into the cluster",
		Long: `Copy the objects of a keyspace's continuous mirror (the keyspace policy's
backup: s3://bucket/prefix?…, one object per key) back into the cluster: the
undo of a mistaken delete or sync --delete, or the writes made after the last
snapshot when the cluster was restored from an older one.

For every object under --prefix (a cairn key prefix; every object of the
bucket URL's prefix without it), the version current at --at (an RFC 3339
time, or how long ago: 10m, 2h; the latest version without it) is put into
the cluster when the cluster's value differs (the values are compared by
their SHA-256: equal keys are not written, so pulling twice changes nothing
the second time). An object whose expiry (written by the mirror) has passed is
skipped; one that expires later is put with the TTL it has left.

A key that was deleted at that time (a delete marker, or, with --at, no
version yet) but is in the cluster is deleted with --delete, and only listed
without it. With --at and --delete, the cluster's keys under --prefix that
the mirror has no object for at all are deleted too (the mirror had nothing
then), so --at --delete needs --prefix (the keyspace's prefix; --prefix ""
for every key of the cluster). In a bucket without versioning, a key
whose only version is newer than --at is left alone: what it was then is
not known.

--undelete puts back only the keys whose latest version in the mirror is a
delete marker and that the cluster does not hold, each from its newest value
version. It goes by the order of the versions, not their times, so it also
works on servers whose version times are not creation times (versitygw's
POSIX backend dates a noncurrent version by when it was replaced).

--dry-run reads everything, prints what would change and changes nothing.
Each change is a line (put KEY (N bytes), delete KEY), then a summary; -o
json prints the summary, with the changes, as JSON. A failed write stops
the pull; the error says what was done before it, and pulling again
finishes the job.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			now := time.Now()
			if at != "" {
				t, err := parseAt(at, now)
				if err != nil {
					return usageError{err}
				}
				o.at = t
			}
			if o.undelete && (o.delete || !o.at.IsZero()) {
				return usagef("--undelete puts back deleted keys from their last value; it does not go with --delete or --at")
			}
			if o.delete && !o.at.IsZero() && !cmd.Flags().Changed("prefix") {
				return usagef("--at with --delete deletes the cluster's keys under --prefix that the mirror had no object for: give --prefix (the keyspace's prefix; --prefix \"\" for every key)")
			}
			b, err := backup.ParseBucket(args[0])
			if err != nil {
				return usageError{err}
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			p := &puller{b: b, c: c, now: time.Now}
			if !g.json() {
				p.report = func(ch pullChange) { printPullChange(env, ch) }
			}
			sum, err := p.pull(cmd.Context(), o)
			return printPullSummary(g, env, sum, err)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.prefix, "prefix", "", "pull only the keys under this cairn key prefix")
	f.StringVar(&at, "at", "", "pull the versions current at this time: RFC 3339 (2026-12-01T18:00:00Z) or how long ago (10m, 2h)")
	f.BoolVar(&o.delete, "delete", false, "delete the keys the mirror had deleted (and, with --at, those it had no object for)")
	f.BoolVar(&o.dryRun, "dry-run", false, "print what would change, change nothing")
	f.BoolVar(&o.undelete, "undelete", false, "put back only the keys deleted in the mirror that the cluster does not hold, from their last value (by the versions' order, not their times)")
	return cmd
}

// parseAt reads --at: an RFC 3339 time, or a duration before now.
func parseAt(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--at %q: want an RFC 3339 time (2026-12-01T18:00:00Z) or how long ago (10m, 2h)", s)
}

type pullOptions struct {
	prefix string
	// at is the time whose versions are pulled; zero is the latest ones.
	at             time.Time
	delete, dryRun bool
	// undelete pulls only the keys whose latest version is a delete marker
	// and that the cluster does not hold, from their newest value.
	undelete bool
}

// pullCluster is what a pull uses of the cluster (*client.Client).
type pullCluster interface {
	List(ctx context.Context, prefix string, o client.ListOptions) (*client.ListResult, error)
	Put(ctx context.Context, key string, value []byte, o client.PutOptions) (int64, error)
	Delete(ctx context.Context, key string, o client.DeleteOptions) (deleted, revision int64, err error)
}

// mirrorKey is one key of the mirror as it was at the time pulled.
type mirrorKey struct {
	key string
	// present: the key had a value then, versionID's; otherwise it was
	// deleted (a delete marker) or not written yet.
	present   bool
	versionID string
	// chosen: a version was current then (a value or a delete marker);
	// modTime is its time.
	chosen  bool
	latest  bool
	modTime time.Time
	// unversioned: a version of the key has no version ID ("" or S3's
	// "null"): the bucket did not keep what it overwrote, so with no
	// version at or before the time pulled, what the key was then is not
	// known (it may have been overwritten since).
	unversioned bool
}

// mirrorAt lists the keys of b under prefix with the version of each
// that was current at at: the newest version stored at or before at, or
// with at zero the latest one. A key whose current version is a delete
// marker, or that had no version yet at at, is there but not present.
// Keys are in key order.
func mirrorAt(ctx context.Context, b backup.Bucket, prefix string, at time.Time) ([]mirrorKey, error) {
	var out []mirrorKey
	index := map[string]int{}
	err := b.ListVersions(ctx, prefix, func(v backup.ObjectVersion) error {
		i, ok := index[v.Key]
		if !ok {
			i = len(out)
			index[v.Key] = i
			out = append(out, mirrorKey{key: v.Key})
		}
		cur := &out[i]
		if v.VersionID == "" || v.VersionID == "null" {
			cur.unversioned = true
		}
		var take bool
		if at.IsZero() {
			// Newest first: the first listed, unless a later one says it
			// is the latest and the first did not.
			take = !cur.chosen || (v.Latest && !cur.latest)
		} else {
			// The newest at or before at, whatever the listing's order.
			take = !v.ModTime.After(at) && (!cur.chosen || v.ModTime.After(cur.modTime))
		}
		if take {
			*cur = mirrorKey{key: v.Key, present: !v.Deleted, versionID: v.VersionID, chosen: true, latest: v.Latest, modTime: v.ModTime,
				unversioned: cur.unversioned}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b mirrorKey) int { return strings.Compare(a.key, b.key) })
	return out, nil
}

// mirrorDeleted lists the keys of b under prefix whose latest version is
// a delete marker, each with its newest value version (for --undelete);
// ListVersions gives each key's versions latest first, then newest to
// oldest.
func mirrorDeleted(ctx context.Context, b backup.Bucket, prefix string) ([]mirrorKey, error) {
	var out []mirrorKey
	state := map[string]int{} // 1: latest is a marker, looking; 2: done
	err := b.ListVersions(ctx, prefix, func(v backup.ObjectVersion) error {
		switch st, seen := state[v.Key]; {
		case !seen:
			if v.Latest && v.Deleted {
				state[v.Key] = 1
			} else {
				state[v.Key] = 2
			}
		case st == 1 && !v.Deleted:
			state[v.Key] = 2
			out = append(out, mirrorKey{key: v.Key, present: true, versionID: v.VersionID, chosen: true, modTime: v.ModTime})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b mirrorKey) int { return strings.Compare(a.key, b.key) })
	return out, nil
}

// pullStep is one key a pull looks at: a value to read from the mirror
// and compare (read), a key of the cluster the mirror did not have then
// (a delete), or one whose state then is not known (unknown).
type pullStep struct {
	key       string
	read      bool
	unknown   bool
	versionID string // "" with at zero: the current object
}

// planPull is what a pull looks at, in key order: every key present in
// the mirror then, and the keys of the cluster (remote) that the mirror
// had deleted, or, with at, had no object for at all.
func planPull(mirror []mirrorKey, remote map[string]string, o pullOptions) []pullStep {
	var steps []pullStep
	seen := make(map[string]bool, len(mirror))
	for _, m := range mirror {
		seen[m.key] = true
		switch {
		case m.present:
			s := pullStep{key: m.key, read: true}
			if !o.at.IsZero() || o.undelete {
				s.versionID = m.versionID
			}
			steps = append(steps, s)
		case remote[m.key] == "":
			// Absent, and not in the cluster either.
		case !m.chosen && m.unversioned:
			steps = append(steps, pullStep{key: m.key, unknown: true})
		default:
			steps = append(steps, pullStep{key: m.key})
		}
	}
	if !o.at.IsZero() {
		for key := range remote {
			if !seen[key] {
				steps = append(steps, pullStep{key: key})
			}
		}
	}
	slices.SortFunc(steps, func(a, b pullStep) int { return strings.Compare(a.key, b.key) })
	return steps
}

// pullChange is one change a pull made (or, dry, would make).
type pullChange struct {
	// Op is put, delete, keep (a delete without --delete) or unknown (a
	// key left alone: the bucket kept no version of it old enough).
	Op    string `json:"op"`
	Key   string `json:"key"`
	Bytes int    `json:"bytes,omitempty"`
	// TTL is what a put of an expiring object had left.
	TTL string `json:"ttl,omitempty"`
}

// pullSummary is what a pull did (or, dry, would do).
type pullSummary struct {
	Bucket string     `json:"bucket"`
	Prefix string     `json:"prefix"`
	At     *time.Time `json:"at,omitempty"`
	DryRun bool       `json:"dry_run"`
	Put    int        `json:"put"`
	// PutBytes is the size of the values put.
	PutBytes  int64 `json:"put_bytes"`
	Deleted   int   `json:"deleted"`
	Unchanged int   `json:"unchanged"`
	// Expired counts the objects skipped because their expiry had passed.
	Expired int `json:"skipped_expired"`
	// NotDeleted counts the keys that --delete would delete.
	NotDeleted int `json:"not_deleted"`
	// Unknown counts the keys left alone because the bucket kept no
	// version of them from the time pulled (it is not versioned).
	Unknown int          `json:"unknown"`
	Changes []pullChange `json:"changes"`
	Error   string       `json:"error,omitempty"`
}

// puller runs one pull from b into c.
type puller struct {
	b   backup.Bucket
	c   pullCluster
	now func() time.Time
	// report, when set, is called with each change once it is made.
	report func(pullChange)
}

func (p *puller) pull(ctx context.Context, o pullOptions) (*pullSummary, error) {
	sum := &pullSummary{Bucket: p.b.String(), Prefix: o.prefix, DryRun: o.dryRun, Changes: []pullChange{}}
	if !o.at.IsZero() {
		at := o.at.UTC()
		sum.At = &at
	}
	var mirror []mirrorKey
	var err error
	if o.undelete {
		mirror, err = mirrorDeleted(ctx, p.b, o.prefix)
	} else {
		mirror, err = mirrorAt(ctx, p.b, o.prefix, o.at)
	}
	if err != nil {
		return sum, fmt.Errorf("backup pull: listing the versions in %s: %w", p.b.String(), err)
	}
	remote, err := listHashes(ctx, p.c, o.prefix)
	if err != nil {
		return sum, fmt.Errorf("backup pull: listing the cluster's keys under %q: %w", o.prefix, err)
	}
	steps := planPull(mirror, remote, o)
	if o.undelete {
		// Only the keys the cluster does not hold: one written again
		// since is not overwritten with an older value.
		steps = slices.DeleteFunc(steps, func(s pullStep) bool { return remote[s.key] != "" })
	}
	for _, s := range steps {
		if err := p.step(ctx, s, remote, o, sum); err != nil {
			what := "nothing was changed"
			if sum.Put+sum.Deleted > 0 && !o.dryRun {
				what = fmt.Sprintf("done before it: %d put, %d deleted; pull again to finish", sum.Put, sum.Deleted)
			}
			return sum, fmt.Errorf("backup pull: %w; %s", err, what)
		}
	}
	return sum, nil
}

// step reads, compares and writes one key.
func (p *puller) step(ctx context.Context, s pullStep, remote map[string]string, o pullOptions, sum *pullSummary) error {
	if s.unknown {
		sum.Unknown++
		p.change(sum, pullChange{Op: "unknown", Key: s.key})
		return nil
	}
	var value []byte
	var meta backup.ObjectMeta
	present := s.read
	if s.read {
		var err error
		if s.versionID == "" {
			value, meta, err = p.b.GetObject(ctx, s.key)
			if errors.Is(err, fs.ErrNotExist) {
				// Deleted since the listing: as if the listing had seen it.
				present, err = false, nil
			}
		} else {
			value, meta, err = p.b.GetVersion(ctx, s.key, s.versionID)
		}
		if err != nil {
			return fmt.Errorf("reading %s from the mirror: %w", s.key, err)
		}
	}
	if !present {
		if remote[s.key] == "" {
			return nil
		}
		ch := pullChange{Op: "delete", Key: s.key}
		if !o.delete {
			ch.Op = "keep"
			sum.NotDeleted++
			p.change(sum, ch)
			return nil
		}
		if !o.dryRun {
			if _, _, err := p.c.Delete(ctx, s.key, client.DeleteOptions{}); err != nil && !errors.Is(err, client.ErrNotFound) {
				return fmt.Errorf("delete %s: %w", s.key, err)
			}
		}
		sum.Deleted++
		p.change(sum, ch)
		return nil
	}
	var ttl time.Duration
	if meta.Expires != 0 {
		ttl = time.Unix(0, meta.Expires).Sub(p.now()).Truncate(time.Millisecond)
		if ttl <= 0 {
			sum.Expired++
			return nil
		}
	}
	h := sha256.Sum256(value)
	if remote[s.key] == "sha256:"+hex.EncodeToString(h[:]) {
		sum.Unchanged++
		return nil
	}
	ch := pullChange{Op: "put", Key: s.key, Bytes: len(value)}
	if ttl > 0 {
		ch.TTL = ttl.String()
	}
	if !o.dryRun {
		if _, err := p.c.Put(ctx, s.key, value, client.PutOptions{TTL: ttl}); err != nil {
			return fmt.Errorf("put %s (%d bytes): %w", s.key, len(value), err)
		}
	}
	sum.Put++
	sum.PutBytes += int64(len(value))
	p.change(sum, ch)
	return nil
}

func (p *puller) change(sum *pullSummary, ch pullChange) {
	sum.Changes = append(sum.Changes, ch)
	if p.report != nil {
		p.report(ch)
	}
}

func printPullChange(env *Env, ch pullChange) {
	switch {
	case ch.Op == "put" && ch.TTL != "":
		fmt.Fprintf(env.Stdout, "put %s (%d bytes, ttl %s)\n", ch.Key, ch.Bytes, ch.TTL)
	case ch.Op == "put":
		fmt.Fprintf(env.Stdout, "put %s (%d bytes)\n", ch.Key, ch.Bytes)
	case ch.Op == "delete":
		fmt.Fprintf(env.Stdout, "delete %s\n", ch.Key)
	case ch.Op == "unknown":
		fmt.Fprintf(env.Stdout, "leave %s (the bucket kept no version of it from then: it is not versioned)\n", ch.Key)
	default:
		fmt.Fprintf(env.Stdout, "keep %s (not in the mirror: would delete with --delete)\n", ch.Key)
	}
}

func printPullSummary(g *globals, env *Env, sum *pullSummary, err error) error {
	if g.json() {
		if err != nil {
			sum.Error = err.Error()
		}
		if perr := printJSON(env.Stdout, sum); perr != nil && err == nil {
			return perr
		}
		return err
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "pulled: %d put, %d deleted, %d unchanged, %d skipped (expired)\n", sum.Put, sum.Deleted, sum.Unchanged, sum.Expired)
	if sum.NotDeleted > 0 {
		fmt.Fprintf(env.Stdout, "kept %s that the mirror has not: would delete with --delete\n", plural(int64(sum.NotDeleted), "key"))
	}
	if sum.Unknown > 0 {
		fmt.Fprintf(env.Stdout, "left %s alone: the bucket kept no version of them from then (versioning is off)\n", plural(int64(sum.Unknown), "key"))
	}
	if sum.DryRun {
		fmt.Fprintln(env.Stdout, "dry run: nothing was changed")
	}
	return nil
}
