// Package cli is the cairn command line: `cairn serve` and the client
// commands. Main maps every outcome to an exit code in one place: 0 ok,
// 1 error, 2 usage, 3 key not found, 4 precondition failed, 5 not
// authenticated or not allowed, 6 (serve) this node was removed from the
// cluster.
package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/config"
)

// Exit codes.
const (
	ExitOK           = 0
	ExitError        = 1
	ExitUsage        = 2
	ExitNotFound     = 3
	ExitPrecondition = 4
	ExitDenied       = 5
	ExitRemoved      = 6
)

// Server is a running node as the serve command sees it.
type Server interface {
	Ready() <-chan struct{}
	Err() <-chan error
	Close() error
}

// StartFunc starts a server; cmd/cairn passes server.Start.
type StartFunc func(ctx context.Context, cfg config.Config) (Server, error)

// Env is what the commands read and write.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Start          StartFunc
	// Removed is the error a server reports on Err when it was removed
	// from the cluster (cmd/cairn passes server.ErrRemoved): serve then
	// exits with ExitRemoved.
	Removed error
	Version string
	// StdoutIsTerminal decides whether `get` ends its output with a newline.
	StdoutIsTerminal bool
	// StderrIsTerminal shows progress bars on stderr; without it they show
	// when Stderr is an *os.File on a terminal.
	StderrIsTerminal bool
}

// usageError marks errors in how a command was called.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

type globals struct {
	// The client flags below are read through resolveClient, which layers
	// them over CAIRN_* and the client config file; only output is direct.
	flags    *pflag.FlagSet
	env      *Env
	resolved *clientSettings

	configFile string
	endpoints  string
	output     string
	timeout    time.Duration
	cacert     string
	cert       string
	key        string
	user       string
	password   string
	token      string
}

// Main runs the command line and returns the process exit code.
func Main(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	root := newRoot(ctx, &env)
	root.SetArgs(args)
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(env.Stderr, "Error:", err)
	if env.Removed != nil && errors.Is(err, env.Removed) {
		return ExitRemoved
	}
	return exitCode(err)
}

func exitCode(err error) int {
	var ue usageError
	switch {
	case errors.As(err, &ue), isCobraUsage(err):
		return ExitUsage
	case errors.Is(err, client.ErrNotFound):
		return ExitNotFound
	case errors.Is(err, client.ErrPreconditionFailed):
		return ExitPrecondition
	case errors.Is(err, client.ErrUnauthenticated), errors.Is(err, client.ErrPermissionDenied):
		return ExitDenied
	}
	return ExitError
}

// isCobraUsage recognizes cobra's own argument and flag errors.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument",
		"invalid argument", "accepts ", "requires at least", "requires at most", "required flag", "if any flags in the group"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func newRoot(ctx context.Context, env *Env) *cobra.Command {
	g := &globals{env: env}
	root := &cobra.Command{
		Use:           "cairn",
		Short:         "cairn: a replicated key-value store (server and client)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	g.flags = pf
	// Defaults are empty here: a flag wins only when given, then CAIRN_*,
	// then the client config file, then the built-in default (clientconfig.go).
	pf.StringVar(&g.configFile, "config", "", "client config file (env "+clientConfigEnv+"; default $XDG_CONFIG_HOME/cairn/client.yaml if it exists; \"\" for none); `cairn serve --config` is the server's")
	pf.StringVar(&g.endpoints, "endpoints", "", "comma-separated client URLs (env CAIRN_ENDPOINTS; default "+defaultEndpoint+")")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	pf.DurationVar(&g.timeout, "timeout", 0, "timeout of each request (env CAIRN_TIMEOUT; default 10s)")
	pf.StringVar(&g.cacert, "cacert", "", "CA certificate to verify the server with (env CAIRN_CACERT)")
	pf.StringVar(&g.cert, "cert", "", "client certificate, mutual TLS (env CAIRN_CERT)")
	pf.StringVar(&g.key, "key", "", "client key, mutual TLS (env CAIRN_KEY)")
	pf.StringVar(&g.user, "user", "", "user name, or name:password, for HTTP Basic (env CAIRN_USER)")
	pf.StringVar(&g.password, "password", "", "password of --user (env CAIRN_PASSWORD)")
	pf.StringVar(&g.token, "token", "", "bearer token (env CAIRN_TOKEN)")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if g.output != "table" && g.output != "json" {
			return usagef("--output must be table or json, not %q", g.output)
		}
		return nil
	}
	root.AddCommand(
		serveCmd(env),
		getCmd(g, env), putCmd(g, env), delCmd(g, env), listCmd(g, env), txnCmd(g, env), watchCmd(g, env), syncCmd(g, env), exportCmd(g, env), snapshotCmd(g, env), backupCmd(g, env),
		membersCmd(g, env), keyspaceCmd(g, env), ringCmd(g, env), leaderCmd(g, env), statusCmd(g, env), benchCmd(g, env), authCmd(g, env), configCmd(g, env),
		versionCmd(g, env), manCmd(root),
	)
	return root
}

func (g *globals) client() (*client.Client, error) { return g.clientAt(nil) }

// clientAt is client talking to endpoints only (nil: the configured ones).
func (g *globals) clientAt(endpoints []string) (*client.Client, error) {
	resolved, err := g.resolveClient()
	if err != nil {
		return nil, err
	}
	s := *resolved // a copy: the endpoints may differ per call
	if endpoints != nil {
		s.Endpoints = endpoints
	}
	var tlsConf *tls.Config
	if s.CACert != "" || s.Cert != "" {
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
		if s.CACert != "" {
			pem, rerr := os.ReadFile(s.CACert)
			if rerr != nil {
				return nil, fmt.Errorf("CA certificate (%s): %w", s.Source["cacert"], rerr)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, usagef("CA certificate %s (%s) holds no certificate", s.CACert, s.Source["cacert"])
			}
			tlsConf.RootCAs = pool
		}
		if s.Cert != "" {
			cert, lerr := tls.LoadX509KeyPair(s.Cert, s.Key)
			if lerr != nil {
				return nil, fmt.Errorf("client certificate and key (%s): %w", s.Source["cert"], lerr)
			}
			tlsConf.Certificates = []tls.Certificate{cert}
		}
	}
	c, err := client.New(client.Config{Endpoints: s.Endpoints, Timeout: s.Timeout, TLS: tlsConf,
		User: s.User, Password: s.Password, Token: s.Token})
	if err != nil {
		return nil, usageError{fmt.Errorf("%w (endpoints from %s)", err, s.Source["endpoints"])}
	}
	return c, nil
}

func (g *globals) json() bool { return g.output == "json" }

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
