package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"filippo.io/age"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/cairnkv/cairn/config"
	"github.com/cairnkv/cairn/internal/backup"
	"github.com/cairnkv/cairn/internal/backup/snapfile"
	"github.com/cairnkv/cairn/internal/raftnode"
)

func snapshotCmd(g *globals, env *Env) *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "save a snapshot of the whole cluster, check one, restore one into a new cluster"}
	var (
		local     bool
		encryptTo string
		identity  string
	)
	identities := func() ([]age.Identity, error) {
		if identity == "" {
			return nil, nil
		}
		return backup.LoadIdentities(identity)
	}
	save := &cobra.Command{
		Use:   "save FILE",
		Short: "stream a consistent snapshot of the whole cluster into FILE (admin)",
		Long: `Save every strong key, revision, user, rule and keyspace policy (one member's
state after a linearizable barrier) and every key of every eventual keyspace (read
on its read quorum) into FILE, as one file ending with a SHA-256 checksum. The
file is written as FILE.part and renamed once its checksum is verified. On a
terminal a progress bar counts the bytes. --local saves the first endpoint's own
state without a quorum (for a member that lost its quorum: the file may lack the
last writes the others acknowledged). --encrypt-to seals the file for age
recipients (age1…): what is written to disk is never plaintext, and the snapshot
is checked as it streams through.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var recipients []age.Recipient
			if encryptTo != "" {
				var err error
				if recipients, err = backup.ParseRecipients(encryptTo); err != nil {
					return usageError{err}
				}
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			path := args[0]
			part := path + ".part"
			f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			var out io.Writer = f
			var sealed io.WriteCloser
			var pw *io.PipeWriter
			type verified struct {
				info snapfile.Info
				err  error
			}
			check := make(chan verified, 1)
			if recipients != nil {
				if sealed, err = backup.Encrypt(f, recipients); err != nil {
					f.Close()
					os.Remove(part)
					return err
				}
				// The plaintext is checked as it streams: it is never on disk.
				var pr *io.PipeReader
				pr, pw = io.Pipe()
				go func() {
					info, err := snapfile.Verify(pr)
					_, _ = io.Copy(io.Discard, pr)
					check <- verified{info, err}
				}()
				out = io.MultiWriter(sealed, pw)
			}
			w := out
			var bar *progressbar.ProgressBar
			if stderrIsTerminal(env) {
				bar = progressbar.NewOptions64(-1, progressbar.OptionSetWriter(env.Stderr), progressbar.OptionShowBytes(true),
					progressbar.OptionSetDescription("snapshot"), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
				w = io.MultiWriter(out, bar)
			}
			_, err = c.SaveSnapshot(cmd.Context(), w, local)
			if bar != nil {
				_ = bar.Finish()
			}
			if sealed != nil {
				if cerr := sealed.Close(); err == nil {
					err = cerr
				}
				pw.Close()
			}
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				if pw != nil {
					<-check
				}
				os.Remove(part)
				return err
			}
			var info snapfile.Info
			if pw != nil {
				v := <-check
				info, err = v.info, v.err
			} else {
				info, err = backup.VerifyFile(part)
			}
			if err != nil {
				os.Remove(part)
				return fmt.Errorf("the snapshot received is not whole: %w", err)
			}
			if err := os.Rename(part, path); err != nil {
				return err
			}
			syncParent(path)
			if g.json() {
				return printJSON(env.Stdout, info)
			}
			fmt.Fprintf(env.Stdout, "saved %s: revision %d, %d strong keys, %d eventual keys, %d keyspace policies, %d users, %s, sha256 %s\n",
				path, info.Revision, info.StrongKeys, info.EventualKeys, info.Keyspaces, info.Users, humanBytes(info.Bytes), info.SHA256)
			return nil
		},
	}
	save.Flags().BoolVar(&local, "local", false, "save the node's own state without a quorum (a member that lost its quorum)")
	save.Flags().StringVar(&encryptTo, "encrypt-to", "", "seal the file for these age recipients (age1…, comma-separated)")
	cmd.AddCommand(save)
	status := &cobra.Command{
		Use:   "status FILE|file:///dir/NAME|s3://bucket/prefix/NAME?…",
		Short: "check a snapshot file (or a scheduled backup) and print its revision, key counts, size and checksum",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, done, err := fetchSnapshot(cmd, args[0])
			if err != nil {
				return err
			}
			defer done()
			ids, err := identities()
			if err != nil {
				return err
			}
			info, err := backup.VerifyFile(path, ids...)
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(env.Stdout, info)
			}
			printSnapshotInfo(env, args[0], info)
			return nil
		},
	}
	status.Flags().StringVar(&identity, "identity", "", "an age identity file that decrypts an encrypted snapshot")
	cmd.AddCommand(status)
	var dataDir, name, initial string
	restore := &cobra.Command{
		Use:   "restore FILE|file:///dir/NAME|s3://bucket/prefix/NAME?… --data-dir DIR --name NAME --initial-cluster NAME=HOST:PORT,...",
		Short: "write a snapshot into the empty data directory of one member of a new cluster (offline)",
		Long: `Restore FILE into DIR for member NAME of a new cluster of the --initial-cluster
members, as etcdutl snapshot restore does: run it on every new member with the same
FILE and --initial-cluster, then start each with cairn serve and the same --name,
--data-dir and --initial-cluster. The members start from the saved state (every key,
revision, user, rule and policy; the eventual keys with their versions) and elect a
leader; the old cluster's members are not among them. The file is checked first: a
truncated or damaged one is refused and nothing is written. DIR must not exist or be
empty. A scheduled backup in S3 (s3://bucket/prefix/NAME with the target's query
parameters, see cairn backup list) is downloaded whole into a temporary file and
checked the same way before anything is written.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dataDir == "" || name == "" || initial == "" {
				return usagef("restore needs --data-dir, --name and --initial-cluster")
			}
			peers, err := config.ParseInitialCluster(initial)
			if err != nil {
				return usageError{err}
			}
			var members []raftnode.Peer
			found := false
			for _, p := range peers {
				members = append(members, raftnode.Peer{ID: p.Name, Addr: p.Addr})
				found = found || p.Name == name
			}
			if !found {
				return usagef("--initial-cluster does not name this member (%q)", name)
			}
			path, done, err := fetchSnapshot(cmd, args[0])
			if err != nil {
				return err
			}
			defer done()
			ids, err := identities()
			if err != nil {
				return err
			}
			info, err := backup.Restore(path, dataDir, members, ids...)
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(env.Stdout, info)
			}
			fmt.Fprintf(env.Stdout, "restored %s into %s for %s of %d members: revision %d, %d strong keys, %d eventual keys; start it with cairn serve --name %s --data-dir %s --initial-cluster %s\n",
				args[0], dataDir, name, len(members), info.Revision, info.StrongKeys, info.EventualKeys, name, dataDir, initial)
			return nil
		},
	}
	restore.Flags().StringVar(&dataDir, "data-dir", "", "the new member's data directory (must not exist or be empty)")
	restore.Flags().StringVar(&name, "name", "", "the new member's name")
	restore.Flags().StringVar(&initial, "initial-cluster", "", "every new member, name=peerhost:port,...")
	restore.Flags().StringVar(&identity, "identity", "", "an age identity file that decrypts an encrypted snapshot")
	cmd.AddCommand(restore)
	return cmd
}

// fetchSnapshot is the local path of what status and restore name (see
// backup.Fetch); done removes a downloaded copy.
func fetchSnapshot(cmd *cobra.Command, what string) (string, func(), error) {
	return backup.Fetch(cmd.Context(), what)
}

func printSnapshotInfo(env *Env, path string, info snapfile.Info) {
	fmt.Fprintf(env.Stdout, "%s: a complete cairn snapshot\n", path)
	fmt.Fprintf(env.Stdout, "  saved      %s by %s (cairn %s)\n", info.Created.Format(time.RFC3339), info.Node, info.Version)
	fmt.Fprintf(env.Stdout, "  revision   %d (Raft index %d)\n", info.Revision, info.Applied)
	if info.ClusterID != "" {
		fmt.Fprintf(env.Stdout, "  cluster    %s (a restore names the new cluster anew)\n", info.ClusterID)
	}
	fmt.Fprintf(env.Stdout, "  keys       %d strong, %d eventual; %d keyspace policies, %d users\n", info.StrongKeys, info.EventualKeys, info.Keyspaces, info.Users)
	fmt.Fprintf(env.Stdout, "  size       %s (%d bytes)\n", humanBytes(info.Bytes), info.Bytes)
	fmt.Fprintf(env.Stdout, "  sha256     %s\n", info.SHA256)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func syncParent(path string) {
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
