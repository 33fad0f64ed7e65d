package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/materialize"
)

func exportCmd(g *globals, env *Env) *cobra.Command {
	var strip, fileMode, dirMode string
	cmd := &cobra.Command{
		Use:   "export PREFIX DIR",
		Short: "write the keys under PREFIX as files into DIR, atomically",
		Long: `Write each key under PREFIX as a file under DIR: key PREFIX + "a/b.txt" is
DIR/a/b.txt (--strip-prefix cuts another prefix instead). The tree is
written the way a materialized keyspace is (docs/FILES.md): into a new
version beside DIR, fsynced, then published by renaming one symlink, so
DIR shows the old export or the new one, never a mix. DIR becomes that
symlink; its versions live in .NAME.cairn beside it. Exporting again
rewrites only the files whose value changed. Keys that cannot be paths
(.., empty components, backslashes, NUL, control characters) and keys
whose path another key uses as a directory are skipped and reported;
nothing is ever written outside DIR. Files cairn did not write that are
already in DIR are kept.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix, dir := args[0], args[1]
			if strip == "" {
				strip = prefix
			}
			if !strings.HasPrefix(prefix, strip) {
				return usagef("--strip-prefix %q is not a prefix of %q", strip, prefix)
			}
			fm, err := parseMode("--file-mode", fileMode)
			if err != nil {
				return err
			}
			dm, err := parseMode("--dir-mode", dirMode)
			if err != nil {
				return err
			}
			abs, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			return runExport(cmd.Context(), g, env, c, prefix, strip, abs, fm, dm)
		},
	}
	cmd.Flags().StringVar(&strip, "strip-prefix", "", "cut this from each key to make its path (default: PREFIX)")
	cmd.Flags().StringVar(&fileMode, "file-mode", "0644", "permissions of the files")
	cmd.Flags().StringVar(&dirMode, "dir-mode", "0755", "permissions of the directories")
	return cmd
}

func parseMode(flag, s string) (fs.FileMode, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n == 0 || n > 0o777 {
		return 0, usagef("%s %q: want permission bits in octal, such as 0644", flag, s)
	}
	return fs.FileMode(n), nil
}

// exportSummary is what export reports (-o json prints it).
type exportSummary struct {
	Dir       string                `json:"dir"`
	Version   string                `json:"version"`
	Files     int                   `json:"files"`
	Changed   int                   `json:"changed"`
	Unchanged int                   `json:"unchanged"`
	Skipped   []materialize.Skipped `json:"skipped,omitempty"`
}

func runExport(ctx context.Context, g *globals, env *Env, c *client.Client, prefix, strip, dir string, fm, dm fs.FileMode) error {
	var metas []materialize.FileMeta
	after := ""
	for {
		page, err := c.List(ctx, prefix, client.ListOptions{After: after, Limit: listPage, KeysOnly: true, Hashes: true})
		if err != nil {
			return err
		}
		for _, it := range page.Items {
			metas = append(metas, materialize.FileMeta{Key: it.Key, SHA256: strings.TrimPrefix(it.Hash, "sha256:"),
				Revision: it.ModRevision, Timestamp: it.Timestamp, Origin: it.Origin})
			after = it.Key
		}
		if !page.More || len(page.Items) == 0 {
			break
		}
	}
	files, skipped := materialize.Plan(metas, strip)
	tree, err := materialize.OpenTree(dir, prefix, fm, dm)
	if err != nil {
		return err
	}
	defer tree.Close()
	cur := tree.Manifest().Files
	target := make(map[string]materialize.Entry, len(files))
	unchanged := 0
	for rel, meta := range files {
		if old, ok := cur[rel]; ok && old.Key == meta.Key && old.SHA256 == meta.SHA256 && meta.SHA256 != "" {
			target[rel] = materialize.Entry{Meta: old}
			unchanged++
			continue
		}
		target[rel] = materialize.Entry{Meta: meta, Load: func() (materialize.FileMeta, []byte, error) {
			it, err := c.Get(ctx, meta.Key)
			if errors.Is(err, client.ErrNotFound) {
				return materialize.FileMeta{}, nil, materialize.ErrGone
			}
			if err != nil {
				return materialize.FileMeta{}, nil, err
			}
			m := meta
			m.Revision, m.Timestamp, m.Origin = it.ModRevision, it.Timestamp, it.Origin
			return m, it.Value, nil
		}}
	}
	changed, err := tree.Publish(target)
	if err != nil {
		return err
	}
	sum := exportSummary{Dir: dir, Version: tree.Manifest().Version, Files: len(tree.Manifest().Files),
		Changed: len(changed), Unchanged: unchanged, Skipped: skipped}
	for _, s := range skipped {
		fmt.Fprintf(env.Stderr, "skipped %q: %s\n", s.Key, s.Reason)
	}
	if g.json() {
		return printJSON(env.Stdout, sum)
	}
	fmt.Fprintf(env.Stdout, "exported %d files into %s (%d changed, %d unchanged, %d keys skipped)\n",
		sum.Files, dir, sum.Changed, sum.Unchanged, len(skipped))
	return nil
}
