package cli

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"github.com/cairnkv/cairn/internal/backup"
	_ "github.com/cairnkv/cairn/internal/backup/s3" // s3:// targets, for backup list, snapshot restore and serve
	"github.com/cairnkv/cairn/internal/backup/snapfile"
)

func backupCmd(g *globals, env *Env) *cobra.Command {
	cmd := &cobra.Command{Use: "backup", Short: "the scheduled backups of --backup-target, and pulls from a keyspace's mirror"}
	var (
		verify   bool
		identity string
	)
	list := &cobra.Command{
		Use:   "list TARGET",
		Short: "list the scheduled backups in TARGET (file:///dir or s3://bucket/prefix?…), oldest first",
		Long: `List the backups the leader took into TARGET (file:///dir or
s3://bucket/prefix?endpoint=…, as given to --backup-target), oldest first, with
their time, revision and size; --verify also reads each one whole (downloads it,
for s3://) and checks its checksum. Restore one with
cairn snapshot restore TARGET-DIR/NAME[?…] …, e.g. file:///dir/NAME or
s3://bucket/prefix/NAME?endpoint=….`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := backup.ParseTarget(args[0])
			if err != nil {
				return usageError{err}
			}
			all, err := backup.ListBackups(t)
			if err != nil {
				return err
			}
			type row struct {
				backup.Named
				SHA256 string `json:"sha256,omitempty"`
				Error  string `json:"error,omitempty"`
				// Encrypted: checked without the identity that opens it.
				Encrypted bool `json:"encrypted,omitempty"`
			}
			var ids []age.Identity
			if identity != "" {
				if ids, err = backup.LoadIdentities(identity); err != nil {
					return err
				}
			}
			rows := []row{}
			for _, b := range all {
				r := row{Named: b}
				if verify {
					if info, err := verifyBackup(cmd, t, b.Name, ids); errors.Is(err, backup.ErrEncrypted) {
						r.Encrypted = true
					} else if err != nil {
						r.Error = err.Error()
					} else {
						r.SHA256 = info.SHA256
					}
				}
				rows = append(rows, r)
			}
			if g.json() {
				return printJSON(env.Stdout, map[string]any{"target": t.String(), "backups": rows})
			}
			tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tTIME\tREVISION\tSIZE\tCHECK")
			for _, r := range rows {
				check := "-"
				switch {
				case r.Encrypted:
					check = "encrypted (give --identity to check it)"
				case r.Error != "":
					check = "DAMAGED: " + r.Error
				case r.SHA256 != "":
					check = "ok sha256 " + r.SHA256[:16]
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", r.Name, r.Time.Format(time.RFC3339), r.Revision, humanBytes(r.Bytes), check)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&verify, "verify", false, "read every backup whole and check its checksum")
	list.Flags().StringVar(&identity, "identity", "", "an age identity file that decrypts encrypted backups (for --verify)")
	cmd.AddCommand(list, backupPullCmd(g, env))
	return cmd
}

// verifyBackup reads one backup of t whole and checks it.
func verifyBackup(cmd *cobra.Command, t backup.Target, name string, ids []age.Identity) (snapfile.Info, error) {
	r, err := t.Open(cmd.Context(), name)
	if err != nil {
		return snapfile.Info{}, err
	}
	defer r.Close()
	return backup.VerifyStream(r, ids...)
}
