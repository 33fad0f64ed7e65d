// Package config holds cairn's one Config struct: its defaults, how it is read
// from a YAML file, CAIRN_* environment variables and flags (in that order of
// increasing precedence), and Validate, which says clearly what is wrong.
package config

import (
	"log/slog"
	"net"
	"time"
)

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

	PeerCertFile      string `yaml:"peer-cert-file"`
	PeerKeyFile       string `yaml:"peer-key-file"`
	PeerTrustedCAFile string `yaml:"peer-trusted-ca-file"`

	MaxValueBytes int64 `yaml:"max-value-bytes"`

	HeartbeatTimeout time.Duration `yaml:"heartbeat-timeout"`
	ElectionTimeout  time.Duration `yaml:"election-timeout"`
	// RequestTimeout bounds how long a request waits for a leader and a quorum.
	RequestTimeout time.Duration `yaml:"request-timeout"`
	// SnapshotEntries is how many log entries trigger a snapshot; TrailingLogs
	// is how many entries are kept behind it for slow followers.
	SnapshotEntries  uint64        `yaml:"snapshot-entries"`
	SnapshotInterval time.Duration `yaml:"snapshot-interval"`
	TrailingLogs     uint64        `yaml:"trailing-logs"`

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
		HeartbeatTimeout:    1000 * time.Millisecond,
		ElectionTimeout:     1000 * time.Millisecond,
		RequestTimeout:      5 * time.Second,
		SnapshotEntries:     8192,
		SnapshotInterval:    30 * time.Second,
		TrailingLogs:        10240,
		LogLevel:            "info",
		LogFormat:           "text",
	}
}

// Peer is one entry of --initial-cluster.
type Peer struct {
	Name string
	Addr string
}
