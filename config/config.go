// Package config holds cairn's one Config struct: its defaults, how it is read
// from a YAML file, CAIRN_* environment variables and flags (in that order of
// increasing precedence), and Validate, which says clearly what is wrong.
package config

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/keyspace"
)

// Auth is the config file's auth section: users and ordered ACL rules,
// evaluated before those managed at run time (see package auth).
type Auth struct {
	Users []auth.User `yaml:"users"`
	Rules []auth.Rule `yaml:"rules"`
}

// StringList is a list flag written as comma-separated values (a YAML list in
// the config file). Setting it replaces the list.
type StringList []string

func (l *StringList) String() string { return strings.Join(*l, ",") }

// Set implements pflag.Value.
func (l *StringList) Set(v string) error {
	*l = nil
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// Type implements pflag.Value.
func (l *StringList) Type() string { return "list" }

// MaterializeList is the node's own materialized prefixes: a YAML list of
// {prefix, dir, file_mode, dir_mode, strip_prefix, on_change, debounce,
// hook_timeout} in the config file, and PREFIX=DIR (repeatable, or
// comma-separated) as a flag or in CAIRN_MATERIALIZE. A flag's entry
// replaces the file's entry for the same prefix.
type MaterializeList []keyspace.Materialize

func (l *MaterializeList) String() string {
	var parts []string
	for _, m := range *l {
		parts = append(parts, m.Prefix+"="+m.Dir)
	}
	return strings.Join(parts, ",")
}

// Set implements pflag.Value: it adds PREFIX=DIR entries.
func (l *MaterializeList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		prefix, dir, ok := strings.Cut(part, "=")
		if !ok || dir == "" {
			return fmt.Errorf("materialize %q: want PREFIX=DIR", part)
		}
		m := keyspace.Materialize{Prefix: prefix, Dir: dir}
		if err := m.Validate(); err != nil {
			return err
		}
		kept := (*l)[:0]
		for _, o := range *l {
			if o.Prefix != prefix {
				kept = append(kept, o)
			}
		}
		*l = append(kept, m)
	}
	return nil
}

// Type implements pflag.Value.
func (l *MaterializeList) Type() string { return "PREFIX=DIR" }

// Config is everything a cairn server needs. The yaml names equal the flag names.
type Config struct {
	Name    string `yaml:"name"`
	DataDir string `yaml:"data-dir"`

	ListenClient string `yaml:"listen-client"`
	ListenPeer   string `yaml:"listen-peer"`
	ListenResp   string `yaml:"listen-resp"`

	// Advertise* default to the listen addresses (client: http://<listen-client>).
	AdvertiseClient string `yaml:"advertise-client"`
	AdvertisePeer   string `yaml:"advertise-peer"`
	AdvertiseResp   string `yaml:"advertise-resp"`

	// InitialCluster is "name=peerhost:port,..." used once, to bootstrap.
	InitialCluster      string `yaml:"initial-cluster"`
	InitialClusterState string `yaml:"initial-cluster-state"` // "new" or "existing"
	// Join is the client URL of a running member to ask for membership.
	Join string `yaml:"join"`
	// JoinAsNonVoter joins as a learner.
	JoinAsNonVoter bool `yaml:"join-as-non-voter"`
	// ForceNewCluster rewrites the Raft configuration in the data directory
	// to this node alone before starting: the last resort to recover a
	// survivor after the cluster lost quorum for good. Writes the lost
	// members acknowledged and this node never received are lost.
	ForceNewCluster bool `yaml:"force-new-cluster"`

	PeerCertFile      string `yaml:"peer-cert-file"`
	PeerKeyFile       string `yaml:"peer-key-file"`
	PeerTrustedCAFile string `yaml:"peer-trusted-ca-file"`
	// PeerCertAllowedCN is a regex the CN of every peer's certificate must
	// match (whole); empty allows any certificate from the peer CA.
	PeerCertAllowedCN string `yaml:"peer-cert-allowed-cn"`

	// TLS on the client (HTTP) and RESP ports; certificates are reloaded
	// when the files change.
	CertFile       string `yaml:"cert-file"`
	KeyFile        string `yaml:"key-file"`
	TrustedCAFile  string `yaml:"trusted-ca-file"`
	ClientCertAuth bool   `yaml:"client-cert-auth"`

	// AllowedHosts lists the client addresses (CIDRs or IPs) whose
	// connections to the client and RESP ports are kept; empty allows all.
	AllowedHosts StringList `yaml:"allowed-hosts"`
	// MaxInflightRequests bounds the requests served at once (HTTP 429,
	// RESP -BUSY over it); MaxConnections bounds open connections per port.
	MaxInflightRequests int64 `yaml:"max-inflight-requests"`
	MaxConnections      int64 `yaml:"max-connections"`
	// ReadTimeout bounds how long a client may take to send one request;
	// IdleTimeout closes connections that send nothing for that long.
	ReadTimeout time.Duration `yaml:"read-timeout"`
	IdleTimeout time.Duration `yaml:"idle-timeout"`

	// Auth holds users and ACL rules; config file only (no flag).
	Auth Auth `yaml:"auth" flag:"-"`
	// Keyspaces are policies the node creates once it is ready if the
	// cluster has none for their prefix (a bootstrap: the cluster's own
	// policies win afterwards); config file only.
	Keyspaces []keyspace.Policy `yaml:"keyspaces" flag:"-"`

	MaxValueBytes int64 `yaml:"max-value-bytes"`

	// Restore is a snapshot file (cairn snapshot save) a node with an empty
	// data directory starts from, as the only member of a new cluster or
	// one of --initial-cluster; ignored once the data directory has state.
	Restore string `yaml:"restore"`

	// BackupTarget, when set, has the leader save a snapshot there every
	// BackupInterval (file:///dir), keeping the newest BackupRetain.
	BackupTarget   string        `yaml:"backup-target"`
	BackupInterval time.Duration `yaml:"backup-interval"`
	BackupRetain   int64         `yaml:"backup-retain"`
	// BackupEncryptTo seals every scheduled backup for these age
	// recipients (age1…, comma-separated).
	BackupEncryptTo string `yaml:"backup-encrypt-to"`
	// RestoreIdentity is the age identity file that decrypts an encrypted
	// Restore file.
	RestoreIdentity string `yaml:"restore-identity"`
	// MirrorReconcile is how often each keyspace mirror (a policy's
	// backup: s3://…) compares the keyspace with its bucket and fixes what
	// differs.
	MirrorReconcile time.Duration `yaml:"mirror-reconcile-interval"`
	// MirrorOutboxMax bounds each node's outbox of eventual keys waiting
	// for their mirror (one entry per key); past it, new keys are counted
	// as an overflow and the mirror reconciles instead.
	MirrorOutboxMax int64 `yaml:"mirror-outbox-max"`

	// Materialize lists the prefixes this node writes as files into local
	// directories, beyond (or overriding) what keyspace policies say.
	Materialize MaterializeList `yaml:"materialize"`
	// WatchHistory is how many revisions of strong events the watch
	// history keeps for watches that resume (0: 10000).
	WatchHistory int64 `yaml:"watch-history"`

	HeartbeatTimeout time.Duration `yaml:"heartbeat-timeout"`
	ElectionTimeout  time.Duration `yaml:"election-timeout"`
	// ReadMode is how linearizable reads of strong keys confirm the
	// leader when the request does not say: read-index (a quorum round)
	// or lease (no round while the leader's lease holds; needs clocks
	// whose rates differ by at most LeaseMaxDrift).
	ReadMode string `yaml:"read-mode"`
	// LeaseMaxDrift is the largest rate difference between two members'
	// clocks that lease reads assume (0.1: one runs at most 10% faster).
	LeaseMaxDrift float64 `yaml:"lease-max-drift"`
	// RequestTimeout bounds how long a request waits for a leader and a quorum.
	RequestTimeout time.Duration `yaml:"request-timeout"`
	// SnapshotEntries is how many log entries trigger a snapshot; TrailingLogs
	// is how many entries are kept behind it for slow followers.
	SnapshotEntries  uint64        `yaml:"snapshot-entries"`
	SnapshotInterval time.Duration `yaml:"snapshot-interval"`
	TrailingLogs     uint64        `yaml:"trailing-logs"`

	// AntiEntropyInterval is how often each node compares its eventual
	// replicas with the other replicas of the same ranges.
	AntiEntropyInterval time.Duration `yaml:"anti-entropy-interval"`
	// MaxClockOffset is how far ahead of this node's clock an eventual
	// write's timestamp may be; a write further ahead is refused.
	MaxClockOffset time.Duration `yaml:"max-clock-offset"`
	// ReposePrefix is the eventual keyspace the Repose datastore API
	// (/powerapi/dist-datastore/objects/) stores its objects under.
	ReposePrefix string `yaml:"repose-prefix"`

	// EnablePprof serves Go's profiler under /debug/pprof/ on the client port.
	EnablePprof bool `yaml:"enable-pprof"`

	LogLevel  string `yaml:"log-level"`  // debug, info, warn, error
	LogFormat string `yaml:"log-format"` // text or json

	// Set by programs that embed cairn (tests), never by flags or files.
	Logger         *slog.Logger `yaml:"-"`
	PeerListener   net.Listener `yaml:"-"`
	ClientListener net.Listener `yaml:"-"`
	RESPListener   net.Listener `yaml:"-"`
}

// Limits on values.
const (
	DefaultMaxValueBytes = 1 << 20
	MaxMaxValueBytes     = 64 << 20
)

// Default returns the embedded defaults: a single node on loopback keeping its
// data in ./cairn-data.
func Default() Config {
	return Config{
		Name:                "default",
		DataDir:             "./cairn-data",
		ListenClient:        "127.0.0.1:7700",
		ListenPeer:          "127.0.0.1:7701",
		ListenResp:          "127.0.0.1:7702",
		InitialClusterState: "new",
		MaxValueBytes:       DefaultMaxValueBytes,
		BackupInterval:      time.Hour,
		MirrorReconcile:     time.Hour,
		MirrorOutboxMax:     1_000_000,
		BackupRetain:        24,
		MaxInflightRequests: 10000,
		MaxConnections:      10000,
		ReadTimeout:         30 * time.Second,
		IdleTimeout:         10 * time.Minute,
		HeartbeatTimeout:    1000 * time.Millisecond,
		ElectionTimeout:     1000 * time.Millisecond,
		ReadMode:            "read-index",
		LeaseMaxDrift:       0.1,
		RequestTimeout:      5 * time.Second,
		SnapshotEntries:     8192,
		SnapshotInterval:    30 * time.Second,
		TrailingLogs:        10240,
		AntiEntropyInterval: 30 * time.Second,
		MaxClockOffset:      500 * time.Millisecond,
		ReposePrefix:        "dist-datastore/",
		LogLevel:            "info",
		LogFormat:           "text",
	}
}

// Peer is one entry of --initial-cluster.
type Peer struct {
	Name string
	Addr string
}
