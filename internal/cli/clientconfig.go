package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/cairnkv/cairn/config"
)

// The client config file holds what every client command needs to reach a
// cluster, so that a shell does not have to carry --endpoints, TLS files and
// credentials. Each setting is resolved on its own: flag > CAIRN_* environment
// > client config file > built-in default (see docs/CONFIG.md "Client config
// file").

const (
	defaultEndpoint = "http://127.0.0.1:7700"
	defaultTimeout  = 10 * time.Second
	// clientConfigEnv names the client config file. It is not CAIRN_CONFIG:
	// that one is `cairn serve --config`'s, and it is often exported in a
	// node's environment where operators also run client commands.
	clientConfigEnv = "CAIRN_CLIENT_CONFIG"
	redacted        = "REDACTED"
)

// Where a setting came from, as `cairn config view` shows it.
const (
	fromFlag    = "flag"
	fromFile    = "file"
	fromDefault = "default"
)

// clientFile is the client config file as written. Paths are relative to
// the file's directory.
type clientFile struct {
	Endpoints    endpointList  `yaml:"endpoints"`
	Timeout      time.Duration `yaml:"timeout"`
	TLS          clientFileTLS `yaml:"tls"`
	User         string        `yaml:"user"`
	Password     string        `yaml:"password"`
	PasswordFile string        `yaml:"password_file"`
	Token        string        `yaml:"token"`
	TokenFile    string        `yaml:"token_file"`
}

type clientFileTLS struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// endpointList accepts a YAML list or one string (comma-separated URLs), as
// --endpoints does.
type endpointList []string

func (l *endpointList) UnmarshalYAML(n *yaml.Node) error {
	var raw []string
	if n.Kind == yaml.ScalarNode {
		raw = strings.Split(n.Value, ",")
	} else if err := n.Decode(&raw); err != nil {
		return err
	}
	*l = nil
	for _, s := range raw {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// clientFileKeys are the keys a client config may hold, by section.
var clientFileKeys = map[string][]string{
	"":    {"endpoints", "timeout", "tls", "user", "password", "password_file", "token", "token_file"},
	"tls": {"ca", "cert", "key"},
}

// keyHints answer the mistakes people are likely to make.
var keyHints = map[string]string{
	"client":   "the client settings go at the top level of this file, not under client:",
	"url":      "use endpoints: (a list of URLs)",
	"endpoint": "use endpoints: (a list of URLs)",
	"cacert":   "use tls: {ca: FILE}",
	"ca":       "use tls: {ca: FILE}",
	"cert":     "use tls: {cert: FILE}",
	"key":      "use tls: {key: FILE}",
	"username": "use user:",
}

// clientSettings is the effective client configuration.
type clientSettings struct {
	File      string // the client config file read, "" for none
	Endpoints []string
	Timeout   time.Duration
	CACert    string
	Cert, Key string
	User      string
	Password  string
	Token     string
	// Source says where each setting came from: flag, env CAIRN_..., file, default.
	Source map[string]string
}

// layer is one level of the precedence order with the values it sets.
type layer struct {
	name string
	// As strings for flags and the environment (endpoints comma-separated).
	endpoints, timeout    string
	cacert, cert, key     string
	user, password, token string
	// As parsed, for the file.
	endpointsList []string
	timeoutVal    time.Duration
	// passwordSrc and tokenSrc name the password_file or token_file read.
	passwordSrc, tokenSrc string
}

// resolveClient works out the effective client settings once.
func (g *globals) resolveClient() (*clientSettings, error) {
	if g.resolved != nil {
		return g.resolved, nil
	}
	s, err := resolveClientSettings(g.flags, g.env)
	if err != nil {
		return nil, err
	}
	g.resolved = s
	return s, nil
}

func resolveClientSettings(flags *pflag.FlagSet, env *Env) (*clientSettings, error) {
	getenv := env.Getenv
	changed := func(name string) bool { return flags.Changed(name) }
	str := func(name string) string {
		f := flags.Lookup(name)
		if f == nil {
			return ""
		}
		return f.Value.String()
	}

	s := &clientSettings{Source: map[string]string{}}

	// Which file: --config, then CAIRN_CLIENT_CONFIG, then the default path
	// if it exists. `--config ""` reads no file at all.
	path, explicit, pathSrc := "", false, ""
	switch {
	case changed("config"):
		path, explicit, pathSrc = str("config"), true, fromFlag
	case getenv(clientConfigEnv) != "":
		path, explicit, pathSrc = getenv(clientConfigEnv), true, "env "+clientConfigEnv
	default:
		path, pathSrc = defaultClientConfigPath(getenv), fromDefault
	}
	var file layer
	file.name = fromFile
	if path != "" {
		f, err := readClientFile(path, env.Stderr)
		switch {
		case err == nil:
			s.File = path
			file = f
		case !explicit && errors.Is(err, fs.ErrNotExist):
			// The default file is optional.
		default:
			return nil, usageError{err}
		}
	}
	s.Source["config"] = pathSrc
	if s.File == "" {
		s.Source["config"] = fromDefault
	}

	flag := layer{name: fromFlag}
	if changed("endpoints") {
		flag.endpoints = str("endpoints")
	}
	if changed("timeout") {
		flag.timeout = str("timeout")
	}
	for name, p := range map[string]*string{"cacert": &flag.cacert, "cert": &flag.cert, "key": &flag.key,
		"user": &flag.user, "password": &flag.password, "token": &flag.token} {
		if changed(name) {
			*p = str(name)
		}
	}
	envl := layer{name: "env"}
	for name, p := range map[string]*string{"ENDPOINTS": &envl.endpoints, "TIMEOUT": &envl.timeout,
		"CACERT": &envl.cacert, "CERT": &envl.cert, "KEY": &envl.key,
		"USER": &envl.user, "PASSWORD": &envl.password, "TOKEN": &envl.token} {
		*p = getenv("CAIRN_" + name)
	}
	for _, l := range []*layer{&flag, &envl} {
		if u, p, ok := strings.Cut(l.user, ":"); ok {
			l.user, l.password = u, p
		}
	}
	layers := []*layer{&flag, &envl, &file}
	envName := func(l *layer, name string) string {
		if l.name == "env" {
			return "env CAIRN_" + strings.ToUpper(name)
		}
		return l.name
	}

	// Endpoints and timeout: the highest layer that sets them.
	s.Endpoints, s.Source["endpoints"] = []string{defaultEndpoint}, fromDefault
	for _, l := range layers {
		if l.endpointsList != nil {
			s.Endpoints, s.Source["endpoints"] = l.endpointsList, l.name
			break
		}
		if l.endpoints != "" {
			s.Endpoints, s.Source["endpoints"] = splitList(l.endpoints), envName(l, "endpoints")
			break
		}
	}
	s.Timeout, s.Source["timeout"] = defaultTimeout, fromDefault
	for _, l := range layers {
		if l.timeoutVal != 0 {
			s.Timeout, s.Source["timeout"] = l.timeoutVal, l.name
			break
		}
		if l.timeout != "" {
			d, err := time.ParseDuration(l.timeout)
			if err != nil {
				return nil, usagef("%s: timeout %q: %w", envName(l, "timeout"), l.timeout, err)
			}
			s.Timeout, s.Source["timeout"] = d, envName(l, "timeout")
			break
		}
	}

	// The CA on its own; the certificate and key as a pair from the highest
	// layer that names either, so a flag never pairs with the file's key.
	for _, l := range layers {
		if l.cacert != "" {
			s.CACert, s.Source["cacert"] = l.cacert, envName(l, "cacert")
			break
		}
	}
	for _, l := range layers {
		if l.cert != "" || l.key != "" {
			s.Cert, s.Key = l.cert, l.key
			s.Source["cert"], s.Source["key"] = envName(l, "cert"), envName(l, "key")
			if (l.cert == "") != (l.key == "") {
				return nil, usagef("%s: the client certificate and key go together", l.name)
			}
			break
		}
	}

	// Credentials: the highest layer that names a user or a token decides
	// which kind is sent. A password is only taken from that layer or a
	// higher one, so `--user bob` never sends the password the file holds
	// for another user.
	for i, l := range layers {
		if l.user == "" && l.token == "" {
			continue
		}
		if l.user != "" && l.token != "" {
			if l.name == fromFlag {
				return nil, usagef("give --user or --token, not both")
			}
			return nil, usagef("%s: give a user or a token, not both", sourceLabel(l, s.File))
		}
		if l.token != "" {
			s.Token, s.Source["token"] = l.token, envName(l, "token")
			if l.tokenSrc != "" {
				s.Source["token"] = l.tokenSrc
			}
			break
		}
		s.User, s.Source["user"] = l.user, envName(l, "user")
		for _, p := range layers[:i+1] {
			if p.password != "" {
				s.Password, s.Source["password"] = p.password, envName(p, "password")
				if p.passwordSrc != "" {
					s.Source["password"] = p.passwordSrc
				}
				break
			}
		}
		break
	}
	return s, nil
}

func sourceLabel(l *layer, file string) string {
	if l.name == fromFile {
		return "client config " + file
	}
	return "the environment"
}

func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// defaultClientConfigPath is $XDG_CONFIG_HOME/cairn/client.yaml, or
// ~/.config/cairn/client.yaml. XDG_CONFIG_HOME is ignored unless absolute, as
// the XDG spec asks. Only the environment given to Main is read, so tests
// never see the user's own file.
func defaultClientConfigPath(getenv func(string) string) string {
	if x := getenv("XDG_CONFIG_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "cairn", "client.yaml")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "cairn", "client.yaml")
	}
	return ""
}

// readClientFile parses a client config file into the file layer, resolving
// its paths against the file's directory and reading password and token
// files. It warns on w when a secret is readable by group or others.
func readClientFile(path string, w io.Writer) (layer, error) {
	l := layer{name: fromFile}
	raw, err := os.ReadFile(path)
	if err != nil {
		return l, fmt.Errorf("client config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return l, fmt.Errorf("client config %s: %w", path, err)
	}
	if err := checkKeys(path, &doc); err != nil {
		return l, err
	}
	var f clientFile
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return l, fmt.Errorf("client config %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	if f.Timeout < 0 {
		return l, fmt.Errorf("client config %s: timeout must not be negative", path)
	}
	l.endpointsList = f.Endpoints
	if len(f.Endpoints) == 0 {
		l.endpointsList = nil
	}
	l.timeoutVal = f.Timeout
	l.cacert, l.cert, l.key = rel(f.TLS.CA), rel(f.TLS.Cert), rel(f.TLS.Key)
	l.user = f.User
	if f.Password != "" && f.PasswordFile != "" {
		return l, fmt.Errorf("client config %s: give password or password_file, not both", path)
	}
	if f.Token != "" && f.TokenFile != "" {
		return l, fmt.Errorf("client config %s: give token or token_file, not both", path)
	}
	if f.Password != "" || f.Token != "" {
		what := "a password"
		if f.Token != "" {
			what = "a token"
		}
		warnOpen(w, path, "client config "+path+" holds "+what)
	}
	l.password, l.token = f.Password, f.Token
	for _, sf := range []struct {
		key, path string
		dst, src  *string
	}{{"password_file", rel(f.PasswordFile), &l.password, &l.passwordSrc}, {"token_file", rel(f.TokenFile), &l.token, &l.tokenSrc}} {
		if sf.path == "" {
			continue
		}
		b, err := os.ReadFile(sf.path)
		if err != nil {
			return l, fmt.Errorf("client config %s: %s: %w", path, sf.key, err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return l, fmt.Errorf("client config %s: %s %s is empty", path, sf.key, sf.path)
		}
		warnOpen(w, sf.path, sf.key+" "+sf.path)
		*sf.dst, *sf.src = v, "file "+sf.key
	}
	return l, nil
}

// warnOpen warns, as ssh does for private keys, when a file holding a secret
// can be read by group or others. Windows has no such mode bits.
func warnOpen(w io.Writer, path, what string) {
	if runtime.GOOS == "windows" || w == nil {
		return
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return
	}
	fmt.Fprintf(w, "Warning: %s and is accessible by group or others (mode %04o); run chmod 600 %s\n", what, fi.Mode().Perm(), path)
}

// checkKeys refuses keys the client config does not know, naming each with
// its line and the file, and says so when the file looks like a server config.
func checkKeys(path string, doc *yaml.Node) error {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil // empty file: no settings
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return fmt.Errorf("client config %s: line %d: want a mapping of settings", path, top.Line)
	}
	var errs []error
	server := serverKeys()
	check := func(section string, m *yaml.Node) {
		known := clientFileKeys[section]
		for i := 0; i+1 < len(m.Content); i += 2 {
			k := m.Content[i]
			if contains(known, k.Value) {
				continue
			}
			name := k.Value
			if section != "" {
				name = section + "." + k.Value
			}
			msg := fmt.Sprintf("client config %s: line %d: unknown key %q (known: %s)", path, k.Line, name, strings.Join(known, ", "))
			switch {
			case section == "" && keyHints[k.Value] != "":
				msg += "; " + keyHints[k.Value]
			case section == "" && server[k.Value]:
				msg += "; this looks like a server config, which `cairn serve --config` reads"
			}
			errs = append(errs, errors.New(msg))
		}
	}
	check("", top)
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == "tls" && top.Content[i+1].Kind == yaml.MappingNode {
			check("tls", top.Content[i+1])
		}
	}
	return errors.Join(errs...)
}

// serverKeys are the top-level keys of the server config.
func serverKeys() map[string]bool {
	out := map[string]bool{}
	t := reflect.TypeOf(config.Config{})
	for i := 0; i < t.NumField(); i++ {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			out[name] = true
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// view is the effective settings with secrets redacted, for `cairn config view`.
func (s *clientSettings) view() []viewRow {
	red := func(v string) string {
		if v == "" {
			return ""
		}
		return redacted
	}
	rows := []viewRow{
		{Key: "config", Value: cmpOr(s.File, "none")},
		{Key: "endpoints", Value: strings.Join(s.Endpoints, ",")},
		{Key: "timeout", Value: s.Timeout.String()},
		{Key: "cacert", Value: s.CACert}, {Key: "cert", Value: s.Cert}, {Key: "key", Value: s.Key},
		{Key: "user", Value: s.User}, {Key: "password", Value: red(s.Password)}, {Key: "token", Value: red(s.Token)},
	}
	for i := range rows {
		if rows[i].Value != "" || rows[i].Key == "config" {
			rows[i].Source = s.Source[rows[i].Key]
		}
	}
	return rows
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

type viewRow struct {
	Key, Value, Source string
}

func configCmd(g *globals, env *Env) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "the client config file (see docs/CONFIG.md)"}
	cmd.AddCommand(&cobra.Command{
		Use:   "view",
		Short: "show the effective client settings and where each comes from (secrets redacted)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := g.resolveClient()
			if err != nil {
				return err
			}
			rows := s.view()
			if g.json() {
				out := map[string]any{}
				src := map[string]string{}
				for _, r := range rows {
					if r.Key == "endpoints" {
						out[r.Key] = s.Endpoints
					} else {
						out[r.Key] = r.Value
					}
					if r.Source != "" {
						src[r.Key] = r.Source
					}
				}
				out["sources"] = src
				return printJSON(env.Stdout, out)
			}
			tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SETTING\tVALUE\tSOURCE")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Key, r.Value, r.Source)
			}
			return tw.Flush()
		},
	})
	return cmd
}
