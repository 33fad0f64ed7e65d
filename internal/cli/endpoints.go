package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/cairnkv/cairn/client"
)

// errEndpointsDown is what `cairn status --cluster` answers, after its
// table, when some endpoint did not answer.
var errEndpointsDown = errors.New("status: some endpoints did not answer")

// endpointStatus is one row of `cairn status --cluster`: what one member
// says about itself, or why it said nothing.
type endpointStatus struct {
	Endpoint string `json:"endpoint"`
	// Member is the member's name in the member list ("" when the
	// endpoint came from --endpoints).
	Member string `json:"member,omitempty"`
	// Lag is how many entries this member has yet to apply: the highest
	// commit index any member reported minus this member's applied index.
	Lag     uint64         `json:"raft_lag"`
	Healthy bool           `json:"healthy"`
	Error   string         `json:"error,omitempty"`
	Status  *client.Status `json:"status,omitempty"`
}

// clusterEndpoints lists the client URL of every member (by name), from
// the member list; when that cannot be had, the configured endpoints.
func (g *globals) clusterEndpoints(ctx context.Context, stderr io.Writer) ([][2]string, error) {
	c, err := g.client()
	if err != nil {
		return nil, err
	}
	ms, merr := c.Members(ctx)
	var out [][2]string
	for _, m := range ms {
		if m.ClientURL != "" {
			out = append(out, [2]string{m.ClientURL, m.Name})
		}
	}
	if merr == nil && len(out) > 0 {
		return out, nil
	}
	s, err := g.resolveClient()
	if err != nil {
		return nil, err
	}
	if merr != nil {
		fmt.Fprintf(stderr, "warning: no member list (%v); asking every --endpoints URL instead\n", merr)
	}
	for _, e := range s.Endpoints {
		out = append(out, [2]string{e, ""})
	}
	return out, nil
}

// statusAll asks every endpoint for its status, at once.
func (g *globals) statusAll(ctx context.Context, endpoints [][2]string) ([]endpointStatus, error) {
	rows := make([]endpointStatus, len(endpoints))
	var wg sync.WaitGroup
	for i, e := range endpoints {
		rows[i] = endpointStatus{Endpoint: e[0], Member: e[1]}
		c, err := g.clientAt([]string{e[0]})
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := c.Status(ctx)
			if err != nil {
				rows[i].Error = err.Error()
				return
			}
			rows[i].Status = st
		}()
	}
	wg.Wait()
	var commit uint64
	for _, r := range rows {
		if r.Status != nil {
			commit = max(commit, r.Status.CommitIndex)
		}
	}
	for i := range rows {
		st := rows[i].Status
		if st == nil {
			continue
		}
		if commit > st.AppliedIndex {
			rows[i].Lag = commit - st.AppliedIndex
		}
		rows[i].Healthy = st.Leader != "" && (st.State == "leader" || st.State == "follower")
		if !rows[i].Healthy && rows[i].Error == "" {
			rows[i].Error = "no leader known"
			if st.State != "leader" && st.State != "follower" {
				rows[i].Error = "raft state " + st.State
			}
		}
	}
	// By name; endpoints that answered with none (an --endpoints URL that
	// is down) last, in the order given.
	slices.SortStableFunc(rows, func(a, b endpointStatus) int {
		switch an, bn := a.name(), b.name(); {
		case an == "" || bn == "":
			return strings.Compare(bn, an)
		default:
			return strings.Compare(an, bn)
		}
	})
	return rows, nil
}

func (r endpointStatus) name() string {
	if r.Status != nil && r.Status.Name != "" {
		return r.Status.Name
	}
	return r.Member
}

// printEndpointStatus writes the rows as a table (or JSON) and answers
// errEndpointsDown when some endpoint did not answer.
func printEndpointStatus(g *globals, w io.Writer, rows []endpointStatus) error {
	down := 0
	for _, r := range rows {
		if r.Status == nil {
			down++
		}
	}
	if g.json() {
		if err := printJSON(w, map[string][]endpointStatus{"endpoints": rows}); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ENDPOINT\tNAME\tROLE\tLEADER\tTERM\tCOMMIT\tAPPLIED\tREVISION\tLAG\tHEALTH\tERROR")
		for _, r := range rows {
			health := "healthy"
			if !r.Healthy {
				health = "unhealthy"
			}
			st := r.Status
			if st == nil {
				fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\t%s\t%s\n", r.Endpoint, dash(r.Member), health, r.Error)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", r.Endpoint, dash(st.Name), st.State, dash(st.Leader),
				st.Term, st.CommitIndex, st.AppliedIndex, st.Revision, r.Lag, health, dash(r.Error))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if down > 0 {
		return fmt.Errorf("%w: %d of %d", errEndpointsDown, down, len(rows))
	}
	return nil
}
