package cli

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

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
			voter := !spec.NonVoter
			return printMemberChange(g, env, memberChange{Action: "added", Member: spec.Name, Voter: &voter, Leader: leaderOf(ms), Members: ms})
		},
	}
	add.Flags().StringVar(&spec.ClientURL, "client-url", "", "the member's client URL")
	add.Flags().StringVar(&spec.RESPAddr, "resp-addr", "", "the member's Redis-protocol address")
	add.Flags().BoolVar(&spec.NonVoter, "non-voter", false, "add as a non-voting learner")
	cmd.AddCommand(add)
	cmd.AddCommand(&cobra.Command{
		Use: "remove NAME", Short: "remove a member (says when it was the leader and who leads now)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			// The list before the removal tells whether the member led; it
			// is only for the report, so a failure to list is not fatal.
			before, _ := c.Members(cmd.Context())
			ms, err := c.RemoveMember(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			wasLeader := leaderOf(before) == args[0]
			if wasLeader && leaderOf(ms) == "" {
				ms = awaitLeader(cmd.Context(), c, args[0], ms)
			}
			return printMemberChange(g, env, memberChange{Action: "removed", Member: args[0],
				WasLeader: wasLeader, Leader: leaderOf(ms), Members: ms})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use: "promote NAME", Short: "make a non-voter a voter", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ms, err := c.PromoteMember(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			voter := true
			return printMemberChange(g, env, memberChange{Action: "promoted", Member: args[0], Voter: &voter, Leader: leaderOf(ms), Members: ms})
		},
	})
	return cmd
}

// memberChange is what a membership command did, for both output formats.
type memberChange struct {
	Action    string          `json:"action"` // added, removed or promoted
	Member    string          `json:"member"`
	Voter     *bool           `json:"voter,omitempty"`
	WasLeader bool            `json:"was_leader,omitempty"`
	Leader    string          `json:"leader"` // after the change; "" when none is known
	Members   []client.Member `json:"members"`
}

func (ch memberChange) String() string {
	switch ch.Action {
	case "added":
		if ch.Voter != nil && *ch.Voter {
			return fmt.Sprintf("added %s as a voter", ch.Member)
		}
		return fmt.Sprintf("added %s as a non-voter", ch.Member)
	case "promoted":
		return fmt.Sprintf("promoted %s to voter", ch.Member)
	}
	if !ch.WasLeader {
		return "removed " + ch.Member
	}
	if ch.Leader == "" {
		return fmt.Sprintf("removed %s (was leader; no new leader known yet)", ch.Member)
	}
	return fmt.Sprintf("removed %s (was leader; leadership moved to %s)", ch.Member, ch.Leader)
}

// awaitLeader lists the members until one other than removed leads, for a
// few seconds at most: a leader that removes itself steps down and answers
// with no list, and the others elect a new leader within an election
// timeout. It returns the last list it got (ms when it got none).
func awaitLeader(ctx context.Context, c *client.Client, removed string, ms []client.Member) []client.Member {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if now, err := c.Members(ctx); err == nil {
			ms = now
			if l := leaderOf(now); l != "" && l != removed {
				return now
			}
		}
		select {
		case <-ctx.Done():
			return ms
		case <-tick.C:
		}
	}
}

func leaderOf(ms []client.Member) string {
	for _, m := range ms {
		if m.Leader {
			return m.Name
		}
	}
	return ""
}

// printMemberChange says what changed, then lists the members as the
// server reports them after the change.
func printMemberChange(g *globals, env *Env, ch memberChange) error {
	if g.json() {
		if ch.Members == nil {
			ch.Members = []client.Member{}
		}
		return printJSON(env.Stdout, ch)
	}
	fmt.Fprintln(env.Stdout, ch)
	if len(ch.Members) == 0 {
		return nil
	}
	return printMembers(g, env, ch.Members)
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
			fmt.Fprintf(env.Stdout, "transferred leadership to %s\n", leader)
			return nil
		},
	}
	transfer.Flags().StringVar(&to, "to", "", "the member to lead (default: the most up-to-date follower)")
	cmd.AddCommand(transfer)
	return cmd
}

func statusCmd(g *globals, env *Env) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use: "status", Short: "show the contacted node's view of the cluster (--cluster: one row per member)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if all {
				eps, err := g.clusterEndpoints(cmd.Context(), env.Stderr)
				if err != nil {
					return err
				}
				rows, err := g.statusAll(cmd.Context(), eps)
				if err != nil {
					return err
				}
				return printEndpointStatus(g, env.Stdout, rows)
			}
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
				{"revision", st.Revision}, {"members", st.Members}, {"last contact", fmt.Sprintf("%dms", st.LastContactMs)},
				{"cluster id", dash(st.ClusterID)}} {
				fmt.Fprintf(tw, "%s\t%v\n", row[0], row[1])
			}
			if len(st.Health) > 0 {
				fmt.Fprintf(tw, "health\t%s\n", healthList(st.Health))
			}
			for _, m := range st.Mirrors {
				fmt.Fprintf(tw, "mirror %s\t%s\n", m.Prefix, mirrorLine(m))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&all, "cluster", false, "ask every member (from the member list; if it cannot be had, every --endpoints URL) and print one row each")
	return cmd
}

// mirrorLine sums up a keyspace mirror for cairn status.
func mirrorLine(m client.MirrorStatus) string {
	parts := []string{redactURL(m.Bucket)}
	switch {
	case m.Mode == "strong" && !m.Active:
		parts = append(parts, "copied by the leader")
	case m.Mode == "strong":
		parts = append(parts, fmt.Sprintf("up to revision %d (%d behind)", m.Cursor, m.Behind))
	default:
		parts = append(parts, fmt.Sprintf("outbox %d", m.Outbox))
		if m.OutboxOverflow > 0 {
			parts = append(parts, fmt.Sprintf("overflowed %d (reconcile due)", m.OutboxOverflow))
		}
	}
	parts = append(parts, fmt.Sprintf("%d puts, %d deletes", m.Puts, m.Deletes))
	if m.LastError != "" && m.LastErrorAt != nil && (m.LastCopy == nil || m.LastErrorAt.After(*m.LastCopy)) {
		parts = append(parts, "last error "+m.LastErrorAt.Format(time.RFC3339)+": "+m.LastError)
	}
	return strings.Join(parts, ", ")
}

// healthList is "n1 self, n2 healthy" in name order.
func healthList(h map[string]string) string {
	names := slices.Sorted(maps.Keys(h))
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + " " + h[n]
	}
	return strings.Join(parts, ", ")
}
