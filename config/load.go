package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// ErrInvalid marks every configuration problem.
var ErrInvalid = errors.New("config: invalid")

// flagHelp documents every field; the flag name is the field's yaml tag.
var flagHelp = map[string]string{
	"name":                      "member name, unique in the cluster",
	"data-dir":                  "directory for the node's data",
	"listen-client":             "host:port for the HTTP API, metrics and health",
	"listen-peer":               "host:port for Raft and internal RPC",
	"listen-resp":               "host:port for the Redis protocol",
	"advertise-client":          "client URL other members and clients use to reach this node (default http://<listen-client>)",
	"advertise-peer":            "peer address other members dial (default <listen-peer>)",
	"advertise-resp":            "Redis-protocol address advertised to clients (default <listen-resp>)",
	"initial-cluster":           "bootstrap members: name=host:port,... (peer addresses); empty for a single node",
	"initial-cluster-state":     "new (bootstrap the initial cluster) or existing (wait to be added)",
	"join":                      "client URL of a running member to ask for membership",
	"join-as-non-voter":         "join as a non-voting learner",
	"force-new-cluster":         "LAST RESORT after quorum loss: make this node, with its data, the only member of its cluster (acknowledged writes it lacks are lost); refused once members have joined a node forced before",
	"peer-cert-file":            "TLS certificate for the peer port (enables mutual TLS)",
	"peer-key-file":             "TLS key for the peer port",
	"peer-trusted-ca-file":      "CA that signs every peer's certificate",
	"peer-cert-allowed-cn":      "regex the CN of every peer certificate must match (empty: any from the peer CA)",
	"max-value-bytes":           "largest value accepted, in bytes (up to 64 MiB)",
	"cert-file":                 "TLS certificate for the client and RESP ports (reloaded when the file changes)",
	"key-file":                  "TLS key for the client and RESP ports",
	"trusted-ca-file":           "CA whose client certificates are verified; the CN becomes the identity",
	"client-cert-auth":          "require a client certificate signed by trusted-ca-file",
	"allowed-hosts":             "comma-separated CIDRs or IPs allowed to connect to the client and RESP ports (empty: all)",
	"max-inflight-requests":     "requests served at once before HTTP 429 / RESP -BUSY (0: no limit)",
	"max-connections":           "open connections per client port (0: no limit)",
	"read-timeout":              "longest time a client may take to send one request",
	"idle-timeout":              "close client connections idle this long (0: never)",
	"heartbeat-timeout":         "Raft heartbeat timeout",
	"election-timeout":          "Raft election timeout",
	"read-mode":                 "linearizable reads by default: read-index (a quorum round per batch of reads) or lease (no round while the leader's lease holds; assumes bounded clock drift, see lease-max-drift)",
	"lease-max-drift":           "largest clock-rate difference between members that lease reads assume (0.1: 10%); the lease lasts heartbeat-timeout/(1+drift)",
	"request-timeout":           "how long a request may wait for a leader and a quorum",
	"anti-entropy-interval":     "how often eventual replicas compare their ranges with the other replicas",
	"max-clock-offset":          "refuse eventual writes stamped further ahead of this node's clock",
	"repose-prefix":             "the eventual keyspace behind the Repose datastore API (/powerapi/dist-datastore/objects/)",
	"snapshot-entries":          "log entries between snapshots",
	"snapshot-interval":         "how often to check whether a snapshot is due",
	"trailing-logs":             "log entries kept behind a snapshot for slow followers",
	"backup-target":             "take scheduled backups into this target (file:///dir or s3://bucket/prefix?…), on the leader",
	"backup-interval":           "how often the leader takes a scheduled backup",
	"backup-retain":             "how many scheduled backups to keep (0: all)",
	"backup-encrypt-to":         "seal scheduled backups for these age recipients (age1..., comma-separated)",
	"restore-identity":          "the age identity file that decrypts an encrypted --restore file",
	"mirror-reconcile-interval": "how often each keyspace mirror (backup: s3://… in a policy) compares the keyspace with its bucket",
	"mirror-outbox-max":         "eventual keys this node queues for their mirrors at most; past it, new keys are counted as an overflow and reconciled",
	"restore":                   "start from this snapshot file (cairn snapshot save) when the data directory is empty",
	"materialize":               "write the keys under PREFIX as files into DIR on this node (PREFIX=DIR, repeatable)",
	"watch-history":             "revisions of strong changes kept for watches that resume from a revision",
	"enable-pprof":              "serve Go's profiler under /debug/pprof/ on the client port",
	"log-level":                 "debug, info, warn or error",
	"log-format":                "text or json",
}

// Flags is what RegisterFlags adds beyond the Config fields.
type Flags struct {
	// ConfigFile is the --config path.
	ConfigFile string
}

// RegisterFlags defines one flag per Config field (named as its yaml tag),
// bound to c, plus --config.
func RegisterFlags(fs *pflag.FlagSet, c *Config) *Flags {
	f := &Flags{}
	fs.StringVar(&f.ConfigFile, "config", "", "YAML config file (keys are the flag names)")
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name := yamlName(t.Field(i))
		if name == "" || t.Field(i).Tag.Get("flag") == "-" {
			continue
		}
		help := flagHelp[name]
		switch p := v.Field(i).Addr().Interface().(type) {
		case *string:
			fs.StringVar(p, name, *p, help)
		case *bool:
			fs.BoolVar(p, name, *p, help)
		case *int64:
			fs.Int64Var(p, name, *p, help)
		case *uint64:
			fs.Uint64Var(p, name, *p, help)
		case *time.Duration:
			fs.DurationVar(p, name, *p, help)
		case *float64:
			fs.Float64Var(p, name, *p, help)
		case pflag.Value:
			fs.Var(p, name, help)
		default:
			panic(fmt.Sprintf("config: no flag type for field %s", t.Field(i).Name))
		}
		if t.Field(i).Tag.Get("flag") == "hidden" {
			_ = fs.MarkHidden(name)
		}
	}
	return f
}

func yamlName(f reflect.StructField) string {
	tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
	if tag == "-" {
		return ""
	}
	return tag
}

// EnvName is the environment variable for a flag: CAIRN_<FLAG_IN_UPPER_SNAKE>.
func EnvName(flag string) string {
	return "CAIRN_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Load applies, after fs.Parse, the config file and the environment under the
// flags given on the command line: flag > environment > file > default.
func Load(fs *pflag.FlagSet, c *Config, f *Flags, getenv func(string) string) error {
	// Remember what the command line set, then rebuild in precedence order.
	cmdline := map[string]string{}
	fs.Visit(func(fl *pflag.Flag) { cmdline[fl.Name] = fl.Value.String() })
	file := f.ConfigFile
	if _, ok := cmdline["config"]; !ok {
		file = getenv(EnvName("config"))
	}
	if file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("%w: config file: %w", ErrInvalid, err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: config file %s: %w", ErrInvalid, file, err)
		}
	}
	var errs []error
	fs.VisitAll(func(fl *pflag.Flag) {
		if fl.Name == "config" {
			return
		}
		if _, set := cmdline[fl.Name]; set {
			return
		}
		if v := getenv(EnvName(fl.Name)); v != "" {
			if err := fl.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%w: environment %s=%q: %w", ErrInvalid, EnvName(fl.Name), v, err))
			}
		}
	})
	for name, v := range cmdline {
		if name == "config" {
			continue
		}
		if err := fs.Set(name, v); err != nil {
			errs = append(errs, fmt.Errorf("%w: flag --%s: %w", ErrInvalid, name, err))
		}
	}
	return errors.Join(errs...)
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...))
	}
	if c.Name == "" || strings.ContainsAny(c.Name, "=, \t") {
		bad("name %q must be non-empty without '=', ',' or spaces", c.Name)
	}
	if c.DataDir == "" {
		bad("data-dir is empty")
	}
	if c.BackupTarget != "" {
		// The scheme only: the s3:// query parameters and credentials are
		// checked by internal/backup/s3 when the server starts (config
		// stays free of the backup packages), which fails with ErrInvalid.
		if u, err := url.Parse(c.BackupTarget); err != nil {
			bad("backup-target: %v", err)
		} else if !(u.Scheme == "file" && strings.HasPrefix(c.BackupTarget, "file:///")) && !(u.Scheme == "s3" && u.Host != "") {
			bad("backup-target %q: want file:///absolute/directory or s3://bucket/prefix?endpoint=…", u.Redacted())
		}
		if c.BackupInterval < time.Second {
			bad("backup-interval %s is shorter than a second", c.BackupInterval)
		}
	}
	if c.MirrorReconcile < time.Second {
		bad("mirror-reconcile-interval %s is shorter than a second", c.MirrorReconcile)
	}
	if c.MirrorOutboxMax < 1 {
		bad("mirror-outbox-max %d: want at least 1", c.MirrorOutboxMax)
	}
	for _, r := range strings.FieldsFunc(c.BackupEncryptTo, func(r rune) bool { return r == ',' || r == ' ' }) {
		if !strings.HasPrefix(r, "age1") {
			bad("backup-encrypt-to %q is not an age recipient (age1...)", r)
		}
	}
	if c.BackupRetain < 0 {
		bad("backup-retain %d is negative", c.BackupRetain)
	}
	if c.WatchHistory < 0 {
		bad("watch-history %d is negative", c.WatchHistory)
	}
	dirs, prefixes := map[string]string{}, map[string]bool{}
	for _, m := range c.Materialize {
		if err := m.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%w: %w", ErrInvalid, err))
		}
		if prefixes[m.Prefix] {
			bad("materialize: prefix %q listed twice", m.Prefix)
		}
		if p, ok := dirs[m.Dir]; ok {
			bad("materialize: prefixes %q and %q both use directory %s", p, m.Prefix, m.Dir)
		}
		prefixes[m.Prefix], dirs[m.Dir] = true, m.Prefix
	}
	for _, a := range []struct{ flag, v string }{{"listen-client", c.ListenClient}, {"listen-peer", c.ListenPeer}, {"listen-resp", c.ListenResp}} {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			bad("%s %q is not host:port", a.flag, a.v)
		}
	}
	for _, a := range []struct{ flag, v string }{{"advertise-peer", c.AdvertisePeer}, {"advertise-resp", c.AdvertiseResp}} {
		if a.v != "" {
			if _, _, err := net.SplitHostPort(a.v); err != nil {
				bad("%s %q is not host:port", a.flag, a.v)
			}
		}
	}
	if c.AdvertiseClient != "" && !isHTTPURL(c.AdvertiseClient) {
		bad("advertise-client %q is not an http(s) URL", c.AdvertiseClient)
	}
	if c.Join != "" && !isHTTPURL(c.Join) {
		bad("join %q is not an http(s) URL", c.Join)
	}
	if c.ForceNewCluster && c.Join != "" {
		bad("force-new-cluster recovers this node's own data as a one-member cluster; it cannot be combined with join")
	}
	switch c.InitialClusterState {
	case "new", "existing":
	default:
		bad("initial-cluster-state must be new or existing, not %q", c.InitialClusterState)
	}
	if c.InitialCluster != "" {
		peers, err := ParseInitialCluster(c.InitialCluster)
		if err != nil {
			errs = append(errs, err)
		} else {
			found := false
			for _, p := range peers {
				found = found || p.Name == c.Name
			}
			if !found {
				bad("initial-cluster does not name this node (%q)", c.Name)
			}
			if c.Join != "" && len(peers) > 1 {
				bad("give either join or a multi-member initial-cluster, not both")
			}
		}
	}
	certs := 0
	for _, f := range []string{c.PeerCertFile, c.PeerKeyFile} {
		if f != "" {
			certs++
		}
	}
	if certs == 1 {
		bad("peer-cert-file and peer-key-file go together")
	}
	if certs == 2 && c.PeerTrustedCAFile == "" {
		bad("peer-trusted-ca-file is required with a peer certificate")
	}
	if c.PeerCertAllowedCN != "" {
		if certs == 0 {
			bad("peer-cert-allowed-cn needs peer-cert-file and peer-key-file")
		}
		if _, err := regexp.Compile(c.PeerCertAllowedCN); err != nil {
			bad("peer-cert-allowed-cn: %v", err)
		}
	}
	switch {
	case (c.CertFile == "") != (c.KeyFile == ""):
		bad("cert-file and key-file go together")
	case c.TrustedCAFile != "" && c.CertFile == "":
		bad("trusted-ca-file needs cert-file and key-file (client certificates are a TLS feature)")
	case c.ClientCertAuth && c.TrustedCAFile == "":
		bad("client-cert-auth needs trusted-ca-file")
	}
	if _, err := auth.ParseHosts(c.AllowedHosts); err != nil {
		errs = append(errs, fmt.Errorf("%w: allowed-hosts: %w", ErrInvalid, err))
	}
	if c.MaxInflightRequests < 0 || c.MaxConnections < 0 || c.ReadTimeout < 0 || c.IdleTimeout < 0 {
		bad("max-inflight-requests, max-connections, read-timeout and idle-timeout must not be negative")
	}
	if _, err := auth.Compile(c.Auth.Rules); err != nil {
		errs = append(errs, fmt.Errorf("%w: auth.rules: %w", ErrInvalid, err))
	}
	if _, err := auth.NewDirectory(nil, c.Auth.Users); err != nil {
		errs = append(errs, fmt.Errorf("%w: auth.users: %w", ErrInvalid, err))
	}
	seen := map[string]bool{}
	for i, p := range c.Keyspaces {
		switch err := p.Validate(); {
		case err != nil:
			errs = append(errs, fmt.Errorf("%w: keyspaces[%d] (prefix %q): %w", ErrInvalid, i, p.Prefix, err))
		case seen[p.Prefix]:
			bad("keyspaces[%d]: prefix %q is defined twice", i, p.Prefix)
		case p.Prefix == "" && p.Mode != keyspace.Strong:
			bad("keyspaces[%d]: the empty prefix is always strong", i)
		case len(p.Prefix) > 4096 || strings.IndexByte(p.Prefix, 0) >= 0:
			bad("keyspaces[%d]: a prefix is at most 4096 bytes with no NUL byte", i)
		case p.MaxValueBytes > c.MaxValueBytes:
			bad("keyspaces[%d]: max_value_bytes %d is over max-value-bytes %d", i, p.MaxValueBytes, c.MaxValueBytes)
		}
		seen[p.Prefix] = true
	}
	if c.MaxValueBytes < 1 || c.MaxValueBytes > MaxMaxValueBytes {
		bad("max-value-bytes must be within 1..%d, not %d", MaxMaxValueBytes, c.MaxValueBytes)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"heartbeat-timeout", c.HeartbeatTimeout}, {"election-timeout", c.ElectionTimeout}, {"request-timeout", c.RequestTimeout}, {"snapshot-interval", c.SnapshotInterval}, {"anti-entropy-interval", c.AntiEntropyInterval}, {"max-clock-offset", c.MaxClockOffset}} {
		if d.v <= 0 {
			bad("%s must be positive", d.flag)
		}
	}
	if c.ReadMode != "read-index" && c.ReadMode != "lease" {
		bad("read-mode must be read-index or lease, not %q", c.ReadMode)
	}
	if !(c.LeaseMaxDrift > 0 && c.LeaseMaxDrift < 1) {
		bad("lease-max-drift must be above 0 and below 1 (a fraction: 0.1 is 10%%), not %v", c.LeaseMaxDrift)
	}
	if c.ElectionTimeout < c.HeartbeatTimeout {
		bad("election-timeout (%s) must be at least heartbeat-timeout (%s)", c.ElectionTimeout, c.HeartbeatTimeout)
	}
	if c.HeartbeatTimeout > 0 && c.HeartbeatTimeout < 10*time.Millisecond {
		bad("heartbeat-timeout must be at least 10ms")
	}
	if c.ReposePrefix == "" || len(c.ReposePrefix) > 4096 || strings.IndexByte(c.ReposePrefix, 0) >= 0 {
		bad("repose-prefix must be a non-empty prefix of at most 4096 bytes with no NUL byte")
	}
	if c.SnapshotEntries < 1 {
		bad("snapshot-entries must be at least 1")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level must be debug, info, warn or error, not %q", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("log-format must be text or json, not %q", c.LogFormat)
	}
	return errors.Join(errs...)
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// ParseInitialCluster parses "name=host:port,...".
func ParseInitialCluster(s string) ([]Peer, error) {
	var out []Peer
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		name, addr, ok := strings.Cut(part, "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("%w: initial-cluster entry %q is not name=host:port", ErrInvalid, part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%w: initial-cluster entry %q: %q is not host:port", ErrInvalid, part, addr)
		}
		if seen[name] {
			return nil, fmt.Errorf("%w: initial-cluster names %q twice", ErrInvalid, name)
		}
		seen[name] = true
		out = append(out, Peer{Name: name, Addr: addr})
	}
	return out, nil
}

// InitialMembers returns the bootstrap members: --initial-cluster, or this
// node alone when it is empty.
func (c *Config) InitialMembers() ([]Peer, error) {
	if c.InitialCluster == "" {
		return []Peer{{Name: c.Name, Addr: c.AdvertisePeerAddr()}}, nil
	}
	return ParseInitialCluster(c.InitialCluster)
}

// AdvertisePeerAddr is the peer address others dial.
func (c *Config) AdvertisePeerAddr() string {
	if c.AdvertisePeer != "" {
		return c.AdvertisePeer
	}
	return c.ListenPeer
}

// NewLogger builds the slog logger described by LogLevel and LogFormat.
func (c *Config) NewLogger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("%w: log-level: %w", ErrInvalid, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.LogFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("%w: log-format %q", ErrInvalid, c.LogFormat)
}
