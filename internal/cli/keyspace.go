package cli

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/keyspace"
)

func printKeyspaces(g *globals, env *Env, ks []client.Keyspace) error {
	if g.json() {
		if ks == nil {
			ks = []client.Keyspace{}
		}
		return printJSON(env.Stdout, map[string][]client.Keyspace{"keyspaces": ks})
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PREFIX\tMODE\tREPLICAS\tWRITE_QUORUM\tREAD_QUORUM\tDEFAULT_TTL\tMAX_VALUE_BYTES\tSLOPPY_QUORUM\tMATERIALIZE\tBACKUP")
	for _, k := range ks {
		mat := "-"
		if m := k.Materialize; m != nil {
			mat = m.Dir
			if len(m.OnChange) > 0 {
				mat += " (on_change " + strings.Join(m.OnChange, " ") + ")"
			}
		}
		bk := dash(redactURL(k.Backup))
		if k.ReadFallback != "" {
			bk += " (read_fallback " + k.ReadFallback + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", strconv.Quote(k.Prefix), k.Mode, dash(string(k.Replicas)),
			dashInt(int64(k.WriteQuorum)), dashInt(int64(k.ReadQuorum)), dash(k.DefaultTTL), dashInt(k.MaxValueBytes), dashBool(k.SloppyQuorum), mat, bk)
	}
	return tw.Flush()
}

// redactURL is a bucket URL as a table shows it: the bucket and prefix.
func redactURL(raw string) string {
	s, _, _ := strings.Cut(raw, "?")
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func dashInt(n int64) string {
	if n == 0 {
		return "-"
	}
	return strconv.FormatInt(n, 10)
}

func dashBool(b *bool) string {
	if b == nil {
		return "-"
	}
	return strconv.FormatBool(*b)
}

// printChange says what a change did, and which members have not applied
// it yet.
func printChange(g *globals, env *Env, verb string, ch *client.KeyspaceChange) error {
	if g.json() {
		if ch.Pending == nil {
			ch.Pending = []string{}
		}
		return printJSON(env.Stdout, ch)
	}
	fmt.Fprintf(env.Stdout, "%s keyspace %q (%s)\n", verb, ch.Prefix, ch.Mode)
	if len(ch.Pending) > 0 {
		fmt.Fprintf(env.Stdout, "not yet applied on: %s\n", strings.Join(ch.Pending, ", "))
	}
	return nil
}

func keyspaceCmd(g *globals, env *Env) *cobra.Command {
	cmd := &cobra.Command{Use: "keyspace", Short: "list and change keyspace policies (admin)",
		Long: `A keyspace is a policy on a key prefix; the longest matching prefix decides.
The empty prefix ("") always has a strong policy. See docs/API.md, "Keyspaces".`}
	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "list keyspace policies", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ks, err := c.Keyspaces(cmd.Context())
			if err != nil {
				return err
			}
			return printKeyspaces(g, env, ks)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use: "get PREFIX", Short: `show the policy of exactly PREFIX ("" for the default)`, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			k, err := c.Keyspace(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(env.Stdout, k)
			}
			return printKeyspaces(g, env, []client.Keyspace{*k})
		},
	})
	var (
		k        client.Keyspace
		sloppy   bool
		mat      client.Materialize
		onChange string
	)
	create := &cobra.Command{
		Use:   "create PREFIX",
		Short: "create the policy of PREFIX, or change its other fields (its mode cannot change)",
		Long: `Set the whole policy of PREFIX from the flags (omitted ones are the defaults),
creating it or changing one that exists. Refused (409) when PREFIX
already holds keys that would move into the new keyspace, or when the mode would
change. The command returns once every member applies the policy, or says which
have not yet.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k.Prefix = args[0]
			if cmd.Flags().Changed("sloppy-quorum") {
				k.SloppyQuorum = &sloppy
			}
			if mat.Dir != "" {
				if onChange != "" {
					argv, err := keyspace.SplitCommand(onChange)
					if err != nil {
						return usageError{err}
					}
					mat.OnChange = argv
				}
				k.Materialize = &mat
			} else if cmd.Flags().Changed("on-change") || cmd.Flags().Changed("file-mode") || cmd.Flags().Changed("dir-mode") ||
				cmd.Flags().Changed("strip-prefix") || cmd.Flags().Changed("debounce") || cmd.Flags().Changed("hook-timeout") {
				return usagef("the materialize flags need --materialize DIR")
			}
			if r := string(k.Replicas); r != "" && r != "all" {
				if n, err := strconv.Atoi(r); err != nil || n < 1 {
					return usagef("--replicas must be a positive number or all, not %q", r)
				}
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			old, err := c.Keyspace(cmd.Context(), k.Prefix)
			verb := "created"
			if err == nil && old != nil {
				verb = "changed"
			}
			ch, err := c.PutKeyspace(cmd.Context(), k)
			if err != nil {
				return err
			}
			return printChange(g, env, verb, ch)
		},
	}
	f := create.Flags()
	f.StringVar(&k.Mode, "mode", "strong", "strong or eventual")
	f.StringVar((*string)(&k.Replicas), "replicas", "", `eventual: replicas per key, a number or "all" (default all)`)
	f.IntVar(&k.WriteQuorum, "write-quorum", 0, "eventual: acks a write waits for")
	f.IntVar(&k.ReadQuorum, "read-quorum", 0, "eventual: replicas a read asks")
	f.StringVar(&k.DefaultTTL, "default-ttl", "", `TTL of writes that give none, a duration ("60s")`)
	f.Int64Var(&k.MaxValueBytes, "max-value-bytes", 0, "largest value under the prefix (default: the node's limit)")
	f.BoolVar(&sloppy, "sloppy-quorum", true, "eventual: write to the next healthy node for an unreachable owner")
	f.StringVar(&mat.Dir, "materialize", "", "write the keys as files into this directory on every node (docs/FILES.md)")
	f.StringVar(&k.Backup, "backup", "", "mirror every put and delete into this bucket, s3://bucket/prefix?endpoint=… (docs/BACKUP.md)")
	f.StringVar(&k.ReadFallback, "read-fallback", "", "backup: serve HTTP reads the replicas cannot answer from the --backup mirror, marked stale")
	f.StringVar(&mat.FileMode, "file-mode", "", "materialize: the files' permissions (default 0644)")
	f.StringVar(&mat.DirMode, "dir-mode", "", "materialize: the directories' permissions (default 0755)")
	f.StringVar(&mat.StripPrefix, "strip-prefix", "", "materialize: cut this from each key to make its path (default: PREFIX)")
	f.StringVar(&onChange, "on-change", "", "materialize: command run after changes are published (no shell; quotes group words)")
	f.StringVar(&mat.Debounce, "debounce", "", "materialize: quiet time before the hook runs (default 1s)")
	f.StringVar(&mat.HookTimeout, "hook-timeout", "", "materialize: how long the hook may run (default 30s)")
	cmd.AddCommand(create)
	cmd.AddCommand(&cobra.Command{
		Use: "delete PREFIX", Short: "delete the policy of PREFIX (refused while its keyspace holds keys)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ch, err := c.DeleteKeyspace(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printChange(g, env, "deleted", ch)
		},
	})
	return cmd
}
