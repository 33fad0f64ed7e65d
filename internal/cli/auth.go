package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/client"
)

// authCmd is `cairn auth`: who am I, users, tokens, rules, and the offline
// helpers that make secrets for a config file.
func authCmd(g *globals, env *Env) *cobra.Command {
	cmd := &cobra.Command{Use: "auth", Short: "identities, users, tokens and ACL rules (see docs/SECURITY.md)"}
	withClient := func(fn func(cmd *cobra.Command, c *client.Client, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			return fn(cmd, c, args)
		}
	}
	cmd.AddCommand(&cobra.Command{
		Use: "whoami", Short: "print the identity the server gives this client", Args: cobra.NoArgs,
		RunE: withClient(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			id, err := c.WhoAmI(cmd.Context())
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(env.Stdout, id)
			}
			name := id.Identity
			if name == "" {
				name = "(anonymous)"
			}
			fmt.Fprintf(env.Stdout, "%s (%s)\n", name, id.Via)
			return nil
		}),
	})

	users := &cobra.Command{Use: "users", Short: "list, set and delete users"}
	users.AddCommand(&cobra.Command{
		Use: "list", Short: "list users", Args: cobra.NoArgs,
		RunE: withClient(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			us, err := c.Users(cmd.Context())
			if err != nil {
				return err
			}
			if g.json() {
				if us == nil {
					us = []client.User{}
				}
				return printJSON(env.Stdout, map[string][]client.User{"users": us})
			}
			tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPASSWORD\tTOKENS\tSOURCE")
			for _, u := range us {
				fmt.Fprintf(tw, "%s\t%v\t%s\t%s\n", u.Name, u.HasPassword, strings.Join(u.Tokens, ","), u.Source)
			}
			return tw.Flush()
		}),
	})
	users.AddCommand(&cobra.Command{
		Use: "set NAME", Short: "create a user or set its password (read from stdin, one line)", Args: cobra.ExactArgs(1),
		RunE: withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			pw, err := readSecret(env.Stdin)
			if err != nil {
				return err
			}
			if err := c.PutUser(cmd.Context(), args[0], pw); err != nil {
				return err
			}
			return printDone(g, env, fmt.Sprintf("set the password of user %s", args[0]), map[string]any{"user": args[0], "password_set": true})
		}),
	})
	users.AddCommand(&cobra.Command{
		Use: "del NAME", Short: "delete a user and its tokens", Args: cobra.ExactArgs(1),
		RunE: withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			if err := c.DeleteUser(cmd.Context(), args[0]); err != nil {
				return err
			}
			return printDone(g, env, fmt.Sprintf("deleted user %s and its tokens", args[0]), map[string]any{"user": args[0], "deleted": true})
		}),
	})
	cmd.AddCommand(users)

	tokens := &cobra.Command{Use: "tokens", Short: "issue and revoke bearer tokens"}
	tokens.AddCommand(&cobra.Command{
		Use: "add USER", Short: "issue a token for USER and print it (it is shown only once)", Args: cobra.ExactArgs(1),
		RunE: withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			tok, id, err := c.AddToken(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(env.Stdout, map[string]string{"user": args[0], "id": id, "token": tok})
			}
			fmt.Fprintln(env.Stdout, tok)
			fmt.Fprintf(env.Stderr, "token id %s for %s\n", id, args[0])
			return nil
		}),
	})
	tokens.AddCommand(&cobra.Command{
		Use: "del USER ID", Short: "revoke a token", Args: cobra.ExactArgs(2),
		RunE: withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			if err := c.DeleteToken(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			return printDone(g, env, fmt.Sprintf("revoked token %s of user %s", args[1], args[0]), map[string]any{"user": args[0], "id": args[1], "revoked": true})
		}),
	})
	cmd.AddCommand(tokens)

	rules := &cobra.Command{Use: "rules", Short: "show and replace the replicated ACL rules"}
	rules.AddCommand(&cobra.Command{
		Use: "get", Short: "print the rules (config file rules first, then the replicated ones)", Args: cobra.NoArgs,
		RunE: withClient(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			rs, err := c.Rules(cmd.Context())
			if err != nil {
				return err
			}
			return printRules(g, env, rs)
		}),
	})
	rules.AddCommand(&cobra.Command{
		Use:   "set FILE|-",
		Short: "replace the replicated rules with those in FILE (YAML or JSON: a list, or {rules: [...]})",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			var raw []byte
			var err error
			if args[0] == "-" {
				raw, err = io.ReadAll(io.LimitReader(env.Stdin, 1<<20))
			} else {
				raw, err = os.ReadFile(args[0])
			}
			if err != nil {
				return err
			}
			rs, err := parseRules(raw)
			if err != nil {
				return usageError{err}
			}
			out, err := c.SetRules(cmd.Context(), rs)
			if err != nil {
				return err
			}
			if !g.json() {
				fmt.Fprintf(env.Stdout, "replaced the cluster rules with %s\n", plural(int64(len(out.Rules)), "rule"))
			}
			return printRules(g, env, out)
		}),
	})
	cmd.AddCommand(rules)

	cmd.AddCommand(&cobra.Command{
		Use: "hash-password", Short: "read a password from stdin and print its bcrypt hash (for password_hash in a config file)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := readSecret(env.Stdin)
			if err != nil {
				return err
			}
			h, err := auth.HashPassword(pw)
			if err != nil {
				return usageError{err}
			}
			fmt.Fprintln(env.Stdout, h)
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use: "new-token", Short: "print a new token and the id and sha256 to put in a config file", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tok, t, err := auth.NewToken()
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(env.Stdout, map[string]string{"token": tok, "id": t.ID, "sha256": t.SHA256})
			}
			fmt.Fprintf(env.Stdout, "token:  %s\nid:     %s\nsha256: %s\n", tok, t.ID, t.SHA256)
			return nil
		},
	})
	return cmd
}

// printDone reports a change that returns nothing but success: msg in
// table output, fields with -o json.
func printDone(g *globals, env *Env, msg string, fields map[string]any) error {
	if g.json() {
		return printJSON(env.Stdout, fields)
	}
	_, err := fmt.Fprintln(env.Stdout, msg)
	return err
}

// readSecret reads one line from r (a password piped in or typed).
func readSecret(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", usagef("no password on stdin")
	}
	return line, nil
}

func parseRules(raw []byte) ([]client.Rule, error) {
	var wrapped struct {
		Rules []client.Rule `yaml:"rules"`
	}
	if err := yaml.Unmarshal(raw, &wrapped); err == nil && wrapped.Rules != nil {
		return wrapped.Rules, nil
	}
	var list []client.Rule
	if err := yaml.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("rules: want a YAML or JSON list of rules, or {rules: [...]}: %w", err)
	}
	if list == nil {
		list = []client.Rule{}
	}
	return list, nil
}

func printRules(g *globals, env *Env, rs *client.Rules) error {
	if g.json() {
		if rs.Rules == nil {
			rs.Rules = []client.Rule{}
		}
		return printJSON(env.Stdout, rs)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tSOURCE\tIDENTITY\tKEYS\tACTIONS\tEFFECT")
	n := 0
	for _, layer := range []struct {
		src string
		rs  []client.Rule
	}{{"config", rs.Config}, {"cluster", rs.Rules}} {
		for _, r := range layer.rs {
			n++
			keys := r.Keys
			switch {
			case r.KeysRegex != "":
				keys = "re:" + r.KeysRegex
			case keys == "":
				keys = "(all)"
			}
			eff := r.Effect
			if eff == "" {
				eff = "allow"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", n, layer.src, r.Identity, keys, strings.Join(r.Actions, ","), eff)
		}
	}
	return tw.Flush()
}
