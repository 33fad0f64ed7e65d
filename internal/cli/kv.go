package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/cairnkv/cairn/client"
)

// itemJSON is a key as -o json prints it: with its revisions, or for an
// eventual key its timestamp and origin.
type itemJSON struct {
	Key            string `json:"key"`
	Value          string `json:"value"`
	CreateRevision *int64 `json:"create_revision,omitempty"`
	ModRevision    *int64 `json:"mod_revision,omitempty"`
	Version        *int64 `json:"version,omitempty"`
	Expires        string `json:"expires,omitempty"`
	Timestamp      string `json:"timestamp,omitempty"`
	Origin         string `json:"origin,omitempty"`
	// Source is "backup" for a key read from the backup mirror.
	Source string `json:"source,omitempty"`
}

func toJSON(it *client.Item) itemJSON {
	j := itemJSON{Key: it.Key, Value: string(it.Value), Source: it.Source}
	if it.Eventual() {
		j.Timestamp, j.Origin = it.Timestamp, it.Origin
	} else {
		j.CreateRevision, j.ModRevision, j.Version = &it.CreateRevision, &it.ModRevision, &it.Version
	}
	if !it.Expires.IsZero() {
		j.Expires = it.Expires.Format(time.RFC3339Nano)
	}
	return j
}

func getCmd(g *globals, env *Env) *cobra.Command {
	var consistency, fallback string
	var readQuorum int
	var printRev, raw bool
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "print a key's value",
		Long: `Print a key's value. On a terminal a newline ends the value (unless it
already ends with one), so the prompt starts on its own line. When stdout is
not a terminal, or with --raw, the value's exact bytes are written and nothing
else, so "cairn get KEY > FILE" is byte-exact. -o json prints the value and
its revisions as JSON; for a key of an eventual keyspace, which has no
revisions, its timestamp and the node that wrote it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []client.ReadOption
			switch consistency {
			case "linearizable":
			case "serializable":
				opts = append(opts, client.Serializable())
			case "local":
				opts = append(opts, client.Local())
			case "lease":
				opts = append(opts, client.Lease())
			case "read-index":
				opts = append(opts, client.ReadIndex())
			default:
				return usagef("--consistency must be linearizable, lease, read-index, serializable or local")
			}
			if readQuorum < 0 {
				return usagef("--read-quorum must be positive")
			}
			if readQuorum > 0 {
				opts = append(opts, client.ReadQuorum(readQuorum))
			}
			switch fallback {
			case "":
			case "backup":
				opts = append(opts, client.FallbackBackup())
			default:
				return usagef("--fallback must be backup")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			it, err := c.Get(cmd.Context(), args[0], opts...)
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(env.Stdout, toJSON(it))
			}
			if it.Source == "backup" {
				fmt.Fprintf(env.Stderr, "warning: %s was read from its keyspace's backup mirror (its replicas did not answer); it may be stale\n", it.Key)
			}
			switch {
			case printRev && it.Eventual():
				fmt.Fprintf(env.Stderr, "timestamp %s (written by %s)\n", it.Timestamp, it.Origin)
			case printRev:
				fmt.Fprintf(env.Stderr, "revision %d\n", it.ModRevision)
			}
			if _, err := env.Stdout.Write(it.Value); err != nil {
				return err
			}
			if env.StdoutIsTerminal && !raw && (len(it.Value) == 0 || it.Value[len(it.Value)-1] != '\n') {
				fmt.Fprintln(env.Stdout)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&consistency, "consistency", "linearizable",
		"linearizable (the node's --read-mode), lease or read-index (linearizable, that way), serializable (this node's replica, possibly stale) or local (this node's own copy of an eventual key)")
	cmd.Flags().IntVar(&readQuorum, "read-quorum", 0, "for an eventual key, ask this many replicas (default: the keyspace's read_quorum)")
	cmd.Flags().BoolVar(&printRev, "print-revision", false, "print the key's mod revision (an eventual key's timestamp) on stderr")
	cmd.Flags().BoolVar(&raw, "raw", false, "write the exact bytes, with no newline added even on a terminal")
	cmd.Flags().StringVar(&fallback, "fallback", "", "backup: when the key's replicas cannot answer, read it from its keyspace's backup mirror (marked stale)")
	return cmd
}

func putCmd(g *globals, env *Env) *cobra.Command {
	var file string
	var ttl time.Duration
	var ifRev int64
	var ifAbsent bool
	var writeQuorum int
	cmd := &cobra.Command{
		Use:   "put KEY [VALUE|-]",
		Short: "write a key (value as argument, from --file, or - for stdin)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var value []byte
			var err error
			switch {
			case len(args) == 2 && file != "":
				return usagef("give the value as an argument or with --file, not both")
			case len(args) == 2 && args[1] == "-":
				value, err = io.ReadAll(env.Stdin)
			case len(args) == 2:
				value = []byte(args[1])
			case file != "":
				value, err = os.ReadFile(file)
			default:
				return usagef("no value: give VALUE, - for stdin, or --file")
			}
			if err != nil {
				return err
			}
			if ttl < 0 {
				return usagef("--ttl must be positive")
			}
			if writeQuorum < 0 {
				return usagef("--write-quorum must be positive")
			}
			o := client.PutOptions{TTL: ttl, IfAbsent: ifAbsent, WriteQuorum: writeQuorum}
			if cmd.Flags().Changed("if-revision") {
				o.IfRevision = &ifRev
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.PutWithResult(cmd.Context(), args[0], value, o)
			if err != nil {
				return err
			}
			if res.Eventual() {
				if g.json() {
					return printJSON(env.Stdout, eventualWriteJSON{Timestamp: res.Timestamp, Acks: res.Acks, Replicas: res.Replicas})
				}
				fmt.Fprintf(env.Stdout, "OK timestamp %s (%d of %d replicas)\n", res.Timestamp, res.Acks, res.Replicas)
				return nil
			}
			if g.json() {
				return printJSON(env.Stdout, map[string]int64{"revision": res.Revision})
			}
			fmt.Fprintf(env.Stdout, "OK revision %d\n", res.Revision)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "read the value from this file")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "expire the key after this long (e.g. 30s)")
	cmd.Flags().Int64Var(&ifRev, "if-revision", 0, "write only if the key's mod revision is this (compare-and-swap)")
	cmd.Flags().BoolVar(&ifAbsent, "if-absent", false, "write only if the key does not exist")
	cmd.Flags().IntVar(&writeQuorum, "write-quorum", 0, "for an eventual key, wait for this many replicas (default: the keyspace's write_quorum)")
	return cmd
}

// eventualWriteJSON is a write of an eventual key as -o json prints it.
type eventualWriteJSON struct {
	Deleted   *int64 `json:"deleted,omitempty"`
	Timestamp string `json:"timestamp"`
	Acks      int    `json:"acks"`
	Replicas  int    `json:"replicas"`
}

func delCmd(g *globals, env *Env) *cobra.Command {
	var prefix bool
	var ifRev int64
	var writeQuorum int
	cmd := &cobra.Command{
		Use:   "del KEY",
		Short: "delete a key, or every key under a prefix with --prefix",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if writeQuorum < 0 {
				return usagef("--write-quorum must be positive")
			}
			o := client.DeleteOptions{Prefix: prefix, WriteQuorum: writeQuorum}
			if cmd.Flags().Changed("if-revision") {
				o.IfRevision = &ifRev
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.DeleteWithResult(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			n := res.Deleted
			if res.Eventual() {
				if g.json() {
					return printJSON(env.Stdout, eventualWriteJSON{Deleted: &n, Timestamp: res.Timestamp, Acks: res.Acks, Replicas: res.Replicas})
				}
				fmt.Fprintf(env.Stdout, "deleted %s at timestamp %s (%d of %d replicas)\n", plural(n, "key"), res.Timestamp, res.Acks, res.Replicas)
				return nil
			}
			if g.json() {
				return printJSON(env.Stdout, map[string]int64{"deleted": n, "revision": res.Revision})
			}
			fmt.Fprintf(env.Stdout, "deleted %s at revision %d\n", plural(n, "key"), res.Revision)
			return nil
		},
	}
	cmd.Flags().BoolVar(&prefix, "prefix", false, "delete every key that starts with KEY")
	cmd.Flags().Int64Var(&ifRev, "if-revision", 0, "delete only if the key's mod revision is this")
	cmd.Flags().IntVar(&writeQuorum, "write-quorum", 0, "for an eventual key, wait for this many replicas (default: the keyspace's write_quorum)")
	return cmd
}

func listCmd(g *globals, env *Env) *cobra.Command {
	var limit int
	var after string
	var keysOnly, all, serializable, local bool
	cmd := &cobra.Command{
		Use:   "list [PREFIX]",
		Short: "list keys under a prefix",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			if limit < 0 {
				return usagef("--limit must not be negative")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var items []client.Item
			var rev int64
			more := false
			for {
				res, err := c.List(cmd.Context(), prefix, client.ListOptions{After: after, Limit: limit, KeysOnly: keysOnly,
					Serializable: serializable, Local: local})
				if err != nil {
					return err
				}
				items, rev, more = append(items, res.Items...), res.Revision, res.More
				if !all || !res.More || len(res.Items) == 0 {
					break
				}
				after = res.Items[len(res.Items)-1].Key
			}
			if g.json() {
				out := struct {
					Revision int64      `json:"revision"`
					Items    []itemJSON `json:"items"`
					More     bool       `json:"more"`
				}{Revision: rev, Items: []itemJSON{}, More: more}
				for i := range items {
					out.Items = append(out.Items, toJSON(&items[i]))
				}
				return printJSON(env.Stdout, out)
			}
			tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			// Strong keys have revisions, eventual keys a timestamp and an
			// origin; a listing over both shows the columns of each.
			var strong, eventual bool
			for _, it := range items {
				strong, eventual = strong || !it.Eventual(), eventual || it.Eventual()
			}
			strong = strong || !eventual
			head := []string{"KEY"}
			if strong {
				head = append(head, "REVISION", "VERSION")
			}
			if eventual {
				head = append(head, "TIMESTAMP", "ORIGIN")
			}
			fmt.Fprintln(tw, strings.Join(append(head, "EXPIRES", "VALUE"), "\t"))
			for _, it := range items {
				exp := ""
				if !it.Expires.IsZero() {
					exp = it.Expires.Format(time.RFC3339)
				}
				row := []string{it.Key}
				if strong {
					if it.Eventual() {
						row = append(row, "", "")
					} else {
						row = append(row, strconv.FormatInt(it.ModRevision, 10), strconv.FormatInt(it.Version, 10))
					}
				}
				if eventual {
					row = append(row, it.Timestamp, it.Origin)
				}
				fmt.Fprintln(tw, strings.Join(append(row, exp, preview(it.Value)), "\t"))
			}
			if more {
				fmt.Fprintf(tw, "(more keys: --after %s, or --all)\n", strconv.Quote(items[len(items)-1].Key))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many keys per page (0: all)")
	cmd.Flags().StringVar(&after, "after", "", "start after this key")
	cmd.Flags().BoolVar(&keysOnly, "keys-only", false, "omit values")
	cmd.Flags().BoolVar(&all, "all", false, "follow continuations to the end")
	cmd.Flags().BoolVar(&serializable, "serializable", false, "read the local replica (possibly stale)")
	cmd.Flags().BoolVar(&local, "local", false, "read this node's own copy of eventual keys (possibly stale)")
	return cmd
}

func preview(v []byte) string {
	if !utf8.Valid(v) {
		return fmt.Sprintf("<%d bytes>", len(v))
	}
	s := strings.ReplaceAll(string(v), "\n", `\n`)
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

func txnCmd(g *globals, env *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "txn FILE|-",
		Short: "run a transaction from a JSON file (see docs/API.md)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var body []byte
			var err error
			if args[0] == "-" {
				body, err = io.ReadAll(env.Stdin)
			} else {
				body, err = os.ReadFile(args[0])
			}
			if err != nil {
				return err
			}
			if !json.Valid(body) {
				return usagef("%s is not valid JSON", args[0])
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.Txn(cmd.Context(), body)
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(env.Stdout, res)
			}
			if res.Timestamp != "" {
				fmt.Fprintf(env.Stdout, "succeeded: %v\ntimestamp: %s (%d of %d replicas)\n", res.Succeeded, res.Timestamp, res.Acks, res.Replicas)
			} else {
				fmt.Fprintf(env.Stdout, "succeeded: %v\nrevision: %d\n", res.Succeeded, res.Revision)
			}
			for _, r := range res.Results {
				fmt.Fprintf(env.Stdout, "%s\n", r)
			}
			return nil
		},
	}
}

// plural is "1 key" or "12 keys".
func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
