package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cairnkv/cairn/client"
)

func printMembers(g *globals, env *Env, ms []client.Member) error {
	if g.json() {
		if ms == nil {
			ms = []client.Member{}
		}
		return printJSON(env.Stdout, map[string][]client.Member{"members": ms})
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPEER\tCLIENT\tRESP\tVOTER\tLEADER")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%v\n", m.Name, m.PeerAddr, m.ClientURL, m.RESPAddr, m.Voter, m.Leader)
	}
	return tw.Flush()
}

func membersCmd(g *globals, env *Env) *cobra.Command {
	cmd := &cobra.Command{Use: "members", Short: "list and change cluster membership"}
	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "list members", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ms, err := c.Members(cmd.Context())
			if err != nil {
				return err
			}
			return printMembers(g, env, ms)
		},
	})
	var spec client.MemberSpec
	add := &cobra.Command{
		Use: "add NAME PEER_ADDR", Short: "add a member (start it afterwards with --initial-cluster-state existing)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec.Name, spec.PeerAddr = args[0], args[1]
			c, err := g.client()
			if err != nil {
				return err
			}
			ms, err := c.AddMember(cmd.Context(), spec)
			if err != nil {
				return err
			}
			return printMembers(g, env, ms)
		},
	}
	add.Flags().StringVar(&spec.ClientURL, "client-url", "", "the member's client URL")
	add.Flags().StringVar(&spec.RESPAddr, "resp-addr", "", "the member's Redis-protocol address")
	add.Flags().BoolVar(&spec.NonVoter, "non-voter", false, "add as a non-voting learner")
	cmd.AddCommand(add)
	for _, op := range []struct {
		use, short string
		fn         func(c *client.Client, cmd *cobra.Command, name string) ([]client.Member, error)
	}{
		{"remove NAME", "remove a member", func(c *client.Client, cmd *cobra.Command, n string) ([]client.Member, error) {
			return c.RemoveMember(cmd.Context(), n)
		}},
		{"promote NAME", "make a non-voter a voter", func(c *client.Client, cmd *cobra.Command, n string) ([]client.Member, error) {
			return c.PromoteMember(cmd.Context(), n)
		}},
	} {
		op := op
		cmd.AddCommand(&cobra.Command{
			Use: op.use, Short: op.short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.client()
				if err != nil {
					return err
				}
				ms, err := op.fn(c, cmd, args[0])
				if err != nil {
					return err
				}
				return printMembers(g, env, ms)
			},
		})
	}
	return cmd
}

func leaderCmd(g *globals, env *Env) *cobra.Command {
	cmd := &cobra.Command{Use: "leader", Short: "leadership"}
	var to string
	transfer := &cobra.Command{
		Use: "transfer", Short: "hand leadership to another voter", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			leader, err := c.TransferLeader(cmd.Context(), to)
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(env.Stdout, map[string]string{"leader": leader})
			}
			fmt.Fprintf(env.Stdout, "leader: %s\n", leader)
			return nil
		},
	}
	transfer.Flags().StringVar(&to, "to", "", "the member to lead (default: the most up-to-date follower)")
	cmd.AddCommand(transfer)
	return cmd
}

func statusCmd(g *globals, env *Env) *cobra.Command {
	return &cobra.Command{
		Use: "status", Short: "show the contacted node's view of the cluster", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(env.Stdout, st)
			}
			tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			for _, row := range [][2]any{{"name", st.Name}, {"state", st.State}, {"leader", st.Leader}, {"term", st.Term},
				{"commit index", st.CommitIndex}, {"applied index", st.AppliedIndex}, {"last index", st.LastIndex},
				{"revision", st.Revision}, {"members", st.Members}, {"last contact", fmt.Sprintf("%dms", st.LastContactMs)}} {
				fmt.Fprintf(tw, "%s\t%v\n", row[0], row[1])
			}
			return tw.Flush()
		},
	}
}
