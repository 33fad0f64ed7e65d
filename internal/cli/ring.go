package cli

import (
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cairnkv/cairn/client"
)

func ringCmd(g *globals, env *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "ring [KEY]",
		Short: "show the hash ring of eventual keyspaces, or where a key lives",
		Long: `Show the consistent-hash ring that places the keys of eventual keyspaces,
as the contacted node sees it: each member, its health (self, healthy,
damaged, validating) and its share of the ring. With KEY, show the key's
hash and keyspace and, for an eventual key, its preference list: the
members that hold its copies, in ring order.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := ""
			if len(args) == 1 {
				if key = args[0]; key == "" {
					return usagef("the key is empty")
				}
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			r, err := c.Ring(cmd.Context(), key)
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(env.Stdout, r)
			}
			if key == "" {
				return printRingMembers(env, r)
			}
			return printKeyPlacement(env, r)
		},
	}
}

func printRingMembers(env *Env, r *client.Ring) error {
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tHEALTH\tSHARE")
	for _, m := range r.Members {
		fmt.Fprintf(tw, "%s\t%s\t%.1f%%\n", m.Name, m.Health, 100*m.Share)
	}
	return tw.Flush()
}

// printKeyPlacement prints where a key lives: for an eventual key its
// replicas in preference order, with their health.
func printKeyPlacement(env *Env, r *client.Ring) error {
	keyspace := ""
	if r.Keyspace != nil {
		keyspace = strconv.Quote(*r.Keyspace)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "key\t%s\n", strconv.Quote(r.Key))
	fmt.Fprintf(tw, "hash\t%s\n", r.Hash)
	fmt.Fprintf(tw, "keyspace\t%s (%s)\n", keyspace, r.Mode)
	if r.Mode != "eventual" {
		fmt.Fprintf(tw, "replicas\tevery voter (Raft)\n")
		return tw.Flush()
	}
	fmt.Fprintf(tw, "replicas\t%d\n", r.Replicas)
	if err := tw.Flush(); err != nil {
		return err
	}
	health := map[string]string{}
	for _, m := range r.Members {
		health[m.Name] = m.Health
	}
	tw = tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tNAME\tHEALTH")
	for i, name := range r.Preference {
		fmt.Fprintf(tw, "%d\t%s\t%s\n", i+1, name, health[name])
	}
	return tw.Flush()
}
