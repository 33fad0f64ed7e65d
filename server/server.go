// Package server wires one cairn node together: the peer port (mux, TLS, Raft
// transport, internal RPC), the storage, the strong engine, the kv service and
// the client-facing front ends. Programs and tests start a node the same way:
//
//	s, err := server.Start(ctx, cfg)
//	<-s.Ready()
//	defer s.Close()
package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/config"
	"github.com/cairnkv/cairn/internal/backup"
	"github.com/cairnkv/cairn/internal/backup/mirror"
	"github.com/cairnkv/cairn/internal/backup/snapfile"
	"github.com/cairnkv/cairn/internal/eventual"
	"github.com/cairnkv/cairn/internal/httpapi"
	"github.com/cairnkv/cairn/internal/materialize"
	"github.com/cairnkv/cairn/internal/peer"
	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/internal/respapi"
	"github.com/cairnkv/cairn/internal/strong"
	"github.com/cairnkv/cairn/internal/testhook"
	"github.com/cairnkv/cairn/internal/webui"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// Version is cairn's version, reported by `cairn version`, INFO and VERSION.
var Version = "0.1.0-dev"

// Server is one running cairn node.
type Server struct {
	cfg   config.Config
	log   *slog.Logger
	hooks *testhook.Hooks

	// Built by the components, in the order Start lists them.
	peerTLS, dialTLS *tls.Config
	clientCerts      *auth.Certs // the client and RESP ports' certificate (nil: no TLS)
	allowed          []netip.Prefix
	inflight         *auth.Inflight
	peerLn           net.Listener
	mux              *peer.Mux
	dialer           *peer.Dialer
	clusterID        *peer.ClusterID
	rpc              *peer.RPC
	strong           *strong.Engine
	eventual         *eventual.Engine
	svc              *kv.Service
	materialize      *materialize.Manager
	mirrors          *mirror.Manager
	backups          *backup.Schedule // nil without --backup-target
	metrics          *nodeMetrics     // the registry /metrics serves (metrics.go)
	httpLn, respLn   net.Listener

	// stops holds each started component's stop, run in reverse by Close.
	stops []stop

	ready     chan struct{}
	errc      chan error
	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

type stop struct {
	name string
	fn   func() error
}

// Start opens the data directory, joins or forms the cluster and starts serving.
// It returns once every listener is open; Ready is closed when the node has a
// leader and has caught up.
func Start(ctx context.Context, cfg config.Config) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("node", cfg.Name), hooks: testhook.From(ctx),
		ready: make(chan struct{}), errc: make(chan error, 4), done: make(chan struct{})}
	if s.hooks == nil {
		s.hooks = &testhook.Hooks{}
	}
	defer func() {
		if err != nil {
			s.Close()
			// The listeners given in cfg are the server's even when a
			// component before the one that serves them failed.
			for _, ln := range []net.Listener{cfg.PeerListener, cfg.ClientListener, cfg.RESPListener} {
				if ln != nil {
					_ = ln.Close()
				}
			}
		}
	}()
	// A node is these components, started in this order and stopped in
	// the reverse one (see Close).
	components := []struct {
		name  string
		start func() error
	}{
		{"security", s.startSecurity},        // certificates, allowed hosts, in-flight limit
		{"peer port", s.startPeer},           // the peer listener, its protocol mux, internal RPC
		{"removal check", s.refuseIfRemoved}, // a removed member's data directory does not start again
		{"strong engine", s.startStrong},     // state database, Raft member, TTL expiry
		{"removal watch", s.watchRemoval},    // a member removed from the cluster reports ErrRemoved
		{"eventual engine", s.startEventual}, // replica database, ring, coordinator, anti-entropy
		{"peer serving", s.servePeer},        // the peer mux, once every engine has registered
		{"service", s.startService},          // kv.Service over the engines
		{"materialize", s.startMaterialize},  // keyspaces written as files into local directories
		{"backups", s.startBackups},          // scheduled snapshots, on the leader
		{"mirrors", s.startMirrors},          // keyspaces copied into buckets as they change
		{"metrics", s.startMetrics},          // the /metrics registry over the components above
		{"http api", s.startHTTP},            // the client port
		{"resp api", s.startRESP},            // the Redis-protocol port
	}
	for _, c := range components {
		if err := c.start(); err != nil {
			return nil, err
		}
		s.log.Debug("started", "component", c.name)
	}
	s.wg.Add(1)
	go s.becomeReady()
	s.log.Info("cairn started", "client", s.ClientURL(), "peer", s.advertisePeer(), "data_dir", cfg.DataDir,
		"restarted", s.strong.HadState())
	return s, nil
}

// onStop registers what stops a started component.
func (s *Server) onStop(name string, fn func() error) { s.stops = append(s.stops, stop{name, fn}) }

func (s *Server) startSecurity() (err error) {
	cfg := s.cfg
	if cfg.PeerCertFile != "" {
		certs, err := auth.LoadCerts(cfg.PeerCertFile, cfg.PeerKeyFile, cfg.PeerTrustedCAFile)
		if err != nil {
			return err
		}
		certs.OnError = s.certReloadFailed("peer")
		var allowedCN *regexp.Regexp
		if cfg.PeerCertAllowedCN != "" {
			allowedCN = regexp.MustCompile("^(?:" + cfg.PeerCertAllowedCN + ")$") // checked by Validate
		}
		s.peerTLS, s.dialTLS = auth.PeerTLS(certs, allowedCN)
	}
	if cfg.CertFile != "" {
		if s.clientCerts, err = auth.LoadCerts(cfg.CertFile, cfg.KeyFile, cfg.TrustedCAFile); err != nil {
			return err
		}
		s.clientCerts.OnError = s.certReloadFailed("client")
	}
	if s.allowed, err = auth.ParseHosts(cfg.AllowedHosts); err != nil {
		return err
	}
	s.inflight = auth.NewInflight(int(cfg.MaxInflightRequests))
	return nil
}

// startPeer opens the peer port and the internal RPC endpoint on it. Its mux
// starts serving once the engines have registered their protocols and RPC
// services (see startStrong).
func (s *Server) startPeer() (err error) {
	if s.hooks.Faults == nil {
		s.hooks.Faults = &peer.Faults{}
	}
	if s.peerLn = s.cfg.PeerListener; s.peerLn == nil {
		if s.peerLn, err = net.Listen("tcp", s.cfg.ListenPeer); err != nil {
			return fmt.Errorf("server: listen peer: %w", err)
		}
	}
	// The cluster ID is known once the strong engine runs (startStrong).
	s.clusterID = &peer.ClusterID{}
	s.dialer = &peer.Dialer{TLS: s.dialTLS, Faults: s.hooks.Faults, Cluster: s.clusterID}
	s.mux = peer.NewMux(s.peerLn, s.peerTLS, s.hooks.Faults, s.log.With("subsystem", "peer"))
	s.mux.Cluster = s.clusterID
	if s.rpc, err = peer.NewRPC(s.mux, s.dialer, peer.RPCOptions{Logger: s.log.With("subsystem", "rpc"),
		MaxFrameBytes: frameLimit(s.cfg.MaxValueBytes)}); err != nil {
		_ = s.mux.Close()
		return err
	}
	// Stopped after the engines: they close their RPC services (waiting for
	// their handlers) while the endpoint still answers.
	s.onStop("peer port", func() error {
		_ = s.rpc.Close()
		return s.mux.Close()
	})
	return nil
}

// restore starts an empty data directory from the --restore snapshot, as
// a member of the new cluster boot (the node alone when it names none).
func (s *Server) restore(boot []raftnode.Peer) error {
	entries, err := os.ReadDir(s.cfg.DataDir)
	if err == nil && len(entries) > 0 {
		s.log.Warn("the data directory has state; --restore is ignored", "restore", s.cfg.Restore, "data_dir", s.cfg.DataDir)
		return nil
	}
	if len(boot) == 0 {
		return fmt.Errorf("%w: --restore starts a new cluster: it needs --initial-cluster-state new, not --join", config.ErrInvalid)
	}
	var ids []age.Identity
	if s.cfg.RestoreIdentity != "" {
		if ids, err = backup.LoadIdentities(s.cfg.RestoreIdentity); err != nil {
			return fmt.Errorf("%w: --restore-identity: %w", config.ErrInvalid, err)
		}
	}
	// A backup in a target (file:///…, s3://…/NAME) is fetched whole first.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	path, done, err := backup.Fetch(ctx, s.cfg.Restore)
	if err != nil {
		return err
	}
	defer done()
	info, err := backup.Restore(path, s.cfg.DataDir, boot, ids...)
	if err != nil {
		return err
	}
	s.log.Info("restored the data directory from a snapshot", "file", s.cfg.Restore, "revision", info.Revision,
		"strong_keys", info.StrongKeys, "eventual_keys", info.EventualKeys, "saved", info.Created, "members", len(boot))
	return nil
}

func (s *Server) startStrong() (err error) {
	cfg := s.cfg
	var boot []raftnode.Peer
	if cfg.Join == "" && cfg.InitialClusterState == "new" {
		members, err := cfg.InitialMembers()
		if err != nil {
			return err
		}
		for _, m := range members {
			boot = append(boot, raftnode.Peer{ID: m.Name, Addr: m.Addr})
		}
	}
	if cfg.Restore != "" {
		if err := s.restore(boot); err != nil {
			return err
		}
	}
	readMode, err := kv.ParseReadMode(cfg.ReadMode)
	if err != nil {
		return err
	}
	if s.hooks.LeaseClockRate == nil {
		s.hooks.LeaseClockRate = new(atomic.Uint64)
	}
	s.strong, err = strong.Open(strong.Config{
		Name: cfg.Name,
		Dir:  cfg.DataDir,
		Raft: raftnode.Config{
			ID:               cfg.Name,
			Dir:              cfg.DataDir,
			AdvertiseAddr:    s.advertisePeer(),
			Mux:              s.mux,
			Dialer:           s.dialer,
			RPC:              s.rpc,
			Bootstrap:        boot,
			ForceNewCluster:  cfg.ForceNewCluster,
			HeartbeatTimeout: cfg.HeartbeatTimeout,
			ElectionTimeout:  cfg.ElectionTimeout,
			SnapshotEntries:  cfg.SnapshotEntries,
			SnapshotInterval: cfg.SnapshotInterval,
			TrailingLogs:     cfg.TrailingLogs,
			MaxValueBytes:    cfg.MaxValueBytes,
			LeaseMaxDrift:    cfg.LeaseMaxDrift,
			LeaseClock:       leaseClock(s.hooks.LeaseClockRate),
			BeforeStoreLogs:  logStall(s.hooks.StallLog),
			StoreFailed:      s.storeFailed,
		},
		ReadMode:            readMode,
		RequestTimeout:      cfg.RequestTimeout,
		UnsafeFollowerReads: debugUnsafeReads(),
		WatchHistory:        cfg.WatchHistory,
		MaxValueBytes:       cfg.MaxValueBytes,
		StoreFailed:         s.storeFailed,
		Logger:              s.log,
	})
	if err != nil {
		return err
	}
	s.onStop("strong engine", s.strong.Close)
	s.hooks.Raft, s.hooks.Member, s.hooks.Digest = s.strong.Raft(), s.strong, s.strong.Digest
	s.clusterID.Set(s.strong.ClusterID)
	return nil
}

func (s *Server) startEventual() (err error) {
	if s.hooks.ClockSkew == nil {
		s.hooks.ClockSkew = new(atomic.Int64)
	}
	skew := s.hooks.ClockSkew
	s.eventual, err = eventual.Open(eventual.Config{
		Wall:                func() time.Time { return time.Now().Add(time.Duration(skew.Load())) },
		Name:                s.cfg.Name,
		DataDir:             s.cfg.DataDir,
		RPC:                 s.rpc,
		Cluster:             controlPlane{s.strong},
		RequestTimeout:      s.cfg.RequestTimeout,
		AntiEntropyInterval: s.cfg.AntiEntropyInterval,
		MaxClockOffset:      s.cfg.MaxClockOffset,
		MaxMessageBytes:     int(strong.MaxEntryBytes(s.cfg.MaxValueBytes)),
		MaxOutbox:           int(s.cfg.MirrorOutboxMax),
		NoRepair:            s.hooks.NoRepair || brokenConvergence,
		StoreFailed:         s.storeFailed,
		Logger:              s.log,
	})
	if err != nil {
		return err
	}
	s.onStop("eventual engine", s.eventual.Close)
	return nil
}

// frameLimit bounds one peer RPC frame, from max-value-bytes (the same on
// every member): a forwarded command of the largest size
// (strong.MaxEntryBytes) and an answer as large, never below 64 MiB
// (multi-key reads, transaction results). 259 MiB at 64 MiB values.
func frameLimit(maxValue int64) int {
	return int(max(64<<20, 2*strong.MaxEntryBytes(maxValue)+1<<20))
}

// controlPlane is what the eventual engine learns from the strong one: the
// members in the Raft configuration and the keyspace policies, as applied
// on this node.
type controlPlane struct{ strong *strong.Engine }

func (c controlPlane) Members() []eventual.Member {
	servers, err := c.strong.Servers()
	if err != nil {
		return nil
	}
	out := make([]eventual.Member, len(servers))
	for i, sv := range servers {
		out[i] = eventual.Member{Name: sv.ID, PeerAddr: sv.Addr}
	}
	return out
}

func (c controlPlane) Keyspaces() *keyspace.Table { return c.strong.Keyspaces() }

// PoliciesLoaded tells the eventual engine when the policy table is the
// one this node had before a restart (its mirror outbox queues every write
// until then).
func (c controlPlane) PoliciesLoaded() bool { return c.strong.PoliciesLoaded() }

func (s *Server) servePeer() error {
	s.goServe("peer mux", s.mux.Serve)
	return nil
}

func (s *Server) startService() error {
	s.svc = kv.NewService(kv.Config{
		MaxValueBytes: s.cfg.MaxValueBytes,
		Logger:        s.log,
		AuthUsers:     s.cfg.Auth.Users,
		AuthRules:     s.cfg.Auth.Rules,
		CheckWrite: func(key string) error {
			if err := s.materialize.CheckWrite(key); err != nil {
				return err
			}
			return s.mirrors.CheckWrite(key)
		},
		ReadFallback: func(ctx context.Context, key string) (*kv.Record, error) { return s.mirrors.ReadFallback(ctx, key) },
		Mirrors: func() any {
			if st := s.mirrors.Status(); len(st) > 0 {
				return st
			}
			return nil
		},
	}, map[keyspace.Mode]kv.Engine{keyspace.Strong: s.strong, keyspace.Eventual: s.eventual}, s.strong)
	s.materialize = materialize.NewManager(s.svc, s.cfg.Materialize, s.strong.Keyspaces(), s.log)
	s.mirrors = mirror.New(mirror.Config{Service: s.svc, Strong: s.strong, Eventual: s.eventual,
		Reconcile: s.cfg.MirrorReconcile, Logger: s.log})
	return nil
}

// startMirrors copies the keyspaces whose policies name a backup bucket
// into it as they change (package backup/mirror).
func (s *Server) startMirrors() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.mirrors.Run(ctx)
	}()
	s.onStop("mirrors", func() error {
		cancel()
		<-done
		return nil
	})
	return nil
}

// startBackups takes scheduled backups into --backup-target while this
// node leads (package backup).
func (s *Server) startBackups() error {
	if s.cfg.BackupTarget == "" {
		return nil
	}
	target, err := backup.ParseTarget(s.cfg.BackupTarget)
	if err != nil {
		return fmt.Errorf("%w: %w", config.ErrInvalid, err)
	}
	var recipients []age.Recipient
	if s.cfg.BackupEncryptTo != "" {
		if recipients, err = backup.ParseRecipients(s.cfg.BackupEncryptTo); err != nil {
			return fmt.Errorf("%w: --backup-encrypt-to: %w", config.ErrInvalid, err)
		}
	}
	sched := &backup.Schedule{Target: target, Interval: s.cfg.BackupInterval, Retain: int(s.cfg.BackupRetain), Recipients: recipients,
		IsLeader: s.strong.IsLeader, Log: s.log.With("subsystem", "backup"),
		Save: func(ctx context.Context, w io.Writer) (*snapfile.Info, error) {
			return s.svc.SaveSnapshot(auth.WithIdentity(ctx, auth.System), w, kv.SnapshotMeta{Node: s.cfg.Name, Version: Version})
		}}
	s.backups = sched
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sched.Run(ctx)
	}()
	s.onStop("backups", func() error {
		cancel()
		<-done
		return nil
	})
	return nil
}

// backupFiles are the scheduled backups of --backup-target on this node,
// for RAFT SNAPSHOT LIST|FILE|READ; nil without a target.
func (s *Server) backupFiles() respapi.Snapshots {
	if s.cfg.BackupTarget == "" {
		return nil
	}
	t, err := backup.ParseTarget(s.cfg.BackupTarget)
	if err != nil {
		return nil
	}
	ft, ok := t.(*backup.FileTarget)
	if !ok {
		return nil
	}
	return backupSnapshots{ft}
}

type backupSnapshots struct{ t *backup.FileTarget }

func (b backupSnapshots) List() ([]respapi.SnapshotFile, error) {
	all, err := backup.ListBackups(b.t)
	if err != nil {
		return nil, err
	}
	out := make([]respapi.SnapshotFile, 0, len(all))
	for _, n := range all {
		f := respapi.SnapshotFile{ID: n.Name, Path: b.t.Path(n.Name), Time: n.Time, Revision: n.Revision}
		if fi, err := os.Stat(f.Path); err == nil {
			f.Bytes = fi.Size()
		}
		out = append(out, f)
	}
	return out, nil
}

// startMaterialize writes the materialized prefixes into their
// directories and keeps them in step (package materialize).
func (s *Server) startMaterialize() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.materialize.Run(ctx)
	}()
	s.onStop("materialize", func() error {
		cancel()
		<-done
		return nil
	})
	return nil
}

func (s *Server) startHTTP() (err error) {
	cfg := s.cfg
	if s.httpLn = cfg.ClientListener; s.httpLn == nil {
		if s.httpLn, err = net.Listen("tcp", cfg.ListenClient); err != nil {
			return fmt.Errorf("server: listen client: %w", err)
		}
	}
	s.httpLn = s.guard(s.httpLn, nil, "http/1.1")
	// closing ends the watch streams when Shutdown starts, which otherwise
	// waits for them until its deadline.
	closing := make(chan struct{})
	srv := &http.Server{
		Handler: s.withDebug(httpapi.New(s.svc, httpapi.Options{
			MaxValueBytes: cfg.MaxValueBytes,
			Version:       Version,
			Logger:        s.log.With("subsystem", "http"),
			IsStale:       s.svc.IsStale,
			Authenticator: s.svc,
			Admin:         s.svc,
			Inflight:      s.inflight,
			Pprof:         pprofIf(cfg.EnablePprof),
			ReposePrefix:  cfg.ReposePrefix,
			Closing:       closing,
			Metrics:       s.metricsHandler(),
			Registerer:    s.metrics.reg,
			UI:            webui.Handler(),
		})),
		ReadHeaderTimeout: min(10*time.Second, positive(cfg.ReadTimeout)),
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      positive(cfg.ReadTimeout) + cfg.RequestTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ConnState:         s.metrics.connState,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(func() { close(closing) })
	s.onStop("http api", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			s.log.Warn("http api: requests still open at shutdown", "err", err)
		}
		return nil
	})
	s.goServe("client http", func() error {
		if err := srv.Serve(s.httpLn); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	return nil
}

func (s *Server) startRESP() (err error) {
	cfg := s.cfg
	if s.respLn = cfg.RESPListener; s.respLn == nil {
		if s.respLn, err = net.Listen("tcp", cfg.ListenResp); err != nil {
			return fmt.Errorf("server: listen resp: %w", err)
		}
	}
	s.respLn = s.guard(s.respLn, func(c net.Conn) {
		_, _ = c.Write([]byte("-ERR max number of clients reached\r\n"))
	})
	srv := respapi.New(s.svc, respapi.Options{
		MaxValueBytes: cfg.MaxValueBytes,
		Logger:        s.log,
		Version:       Version,
		Auth:          s.svc,
		Inflight:      s.inflight,
		ReadTimeout:   cfg.ReadTimeout,
		IdleTimeout:   cfg.IdleTimeout,
		Snapshots:     s.backupFiles(),
		Registerer:    s.metrics.reg,
	})
	s.onStop("resp api", srv.Close)
	s.goServe("resp", func() error { return srv.Serve(s.respLn) })
	return nil
}

// guard applies allowed_hosts and max-connections to a client listener, then
// TLS when a certificate is configured. refuse tells a client over the
// connection limit why it is dropped.
func (s *Server) guard(ln net.Listener, refuse func(net.Conn), nextProtos ...string) net.Listener {
	ln = auth.GuardListener(ln, auth.GuardOptions{
		AllowedHosts: s.allowed,
		MaxConns:     int(s.cfg.MaxConnections),
		Refuse:       refuse,
		OnReject: func(remote net.Addr, reason string) {
			s.metrics.refused.Add(1)
			s.log.Warn("client connection refused", "remote", remote.String(), "reason", reason)
		},
	})
	if s.clientCerts != nil {
		ln = tls.NewListener(ln, auth.ServerTLS(s.clientCerts, s.cfg.ClientCertAuth, nextProtos...))
	}
	return ln
}

func (s *Server) certReloadFailed(port string) func(error) {
	return func(err error) {
		s.log.Error("certificate reload failed; still using the previous one", "port", port, "err", err)
	}
}

// positive is d, or 30 s when d is not set.
func positive(d time.Duration) time.Duration {
	if d <= 0 {
		return 30 * time.Second
	}
	return d
}

// pprofHandler serves Go's profiler; the API mounts it under /debug/pprof/
// for admins only.
func pprofHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/debug/pprof/profile":
			pprof.Profile(w, r)
		case "/debug/pprof/trace":
			pprof.Trace(w, r)
		case "/debug/pprof/symbol":
			pprof.Symbol(w, r)
		default:
			pprof.Index(w, r)
		}
	})
}

func pprofIf(on bool) http.Handler {
	if !on {
		return nil
	}
	return pprofHandler()
}

// withDebug adds the test-build fault-injection endpoints when compiled in.
func (s *Server) withDebug(api http.Handler) http.Handler {
	dbg := debugHandler(s)
	if dbg == nil {
		return api
	}
	// Route by prefix by hand: a ServeMux in front of the API would clean
	// key paths such as /v1/kv/a//b and redirect them to another key.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case strings.HasPrefix(p, "/debug/faults/"):
			dbg.ServeHTTP(w, r)
		default:
			api.ServeHTTP(w, r)
		}
	})
}

// storeFailed stops the node when one of its databases fails (its disk
// keeps failing writes): a node that cannot persist must stop rather than
// hang or acknowledge what it cannot keep. The cluster carries on without
// it; an operator fixes the disk and starts it again.
func (s *Server) storeFailed(err error) {
	s.log.Error("a database failed; stopping the node", "err", err)
	select {
	case s.errc <- fmt.Errorf("server: %w", err):
	default:
	}
}

func (s *Server) goServe(what string, fn func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := fn(); err != nil {
			s.log.Error("serving failed", "what", what, "err", err)
			select {
			case s.errc <- fmt.Errorf("server: %s: %w", what, err):
			default:
			}
		}
	}()
}

func (s *Server) advertisePeer() string {
	if s.cfg.AdvertisePeer != "" {
		return s.cfg.AdvertisePeer
	}
	if s.cfg.PeerListener != nil {
		return s.cfg.PeerListener.Addr().String()
	}
	return s.cfg.ListenPeer
}

// ClientURL is the URL this node advertises for its HTTP API.
func (s *Server) ClientURL() string {
	if s.cfg.AdvertiseClient != "" {
		return s.cfg.AdvertiseClient
	}
	scheme := "http://"
	if s.cfg.CertFile != "" {
		scheme = "https://"
	}
	if s.httpLn != nil {
		return scheme + s.httpLn.Addr().String()
	}
	return scheme + s.cfg.ListenClient
}

// RESPAddr is the Redis-protocol address this node advertises.
func (s *Server) RESPAddr() string {
	if s.cfg.AdvertiseResp != "" {
		return s.cfg.AdvertiseResp
	}
	if s.respLn != nil {
		return s.respLn.Addr().String()
	}
	return s.cfg.ListenResp
}

// becomeReady joins the cluster when asked to, publishes this node's
// addresses, and closes ready once the node has caught up.
func (s *Server) becomeReady() {
	defer s.wg.Done()
	if s.cfg.Join != "" && !s.strong.HadState() {
		s.retry("join", func(ctx context.Context) error { return s.join(ctx) })
	}
	for {
		if s.svc.Ready() == nil {
			break
		}
		select {
		case <-s.done:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	self := kv.Member{Name: s.cfg.Name, PeerAddr: s.advertisePeer(), ClientURL: s.ClientURL(), RESPAddr: s.RESPAddr()}
	s.retry("publish member addresses", func(ctx context.Context) error { return s.svc.PublishSelf(ctx, self) })
	// The config file's keyspaces are in force before the node says it is
	// ready.
	s.bootstrapKeyspaces()
	select {
	case <-s.done:
		return
	default:
		close(s.ready)
		s.log.Info("ready")
	}
}

// bootstrapKeyspaces creates each keyspace of the config file that the
// cluster has no policy for yet. The cluster's policies win: one that exists
// with other fields is left as it is, with a warning (the file is a
// bootstrap, as --initial-cluster is). The empty prefix always has a
// policy; the file's is applied only while the cluster's is still the
// built-in default.
func (s *Server) bootstrapKeyspaces() {
	builtin := keyspace.Policy{Prefix: "", Mode: keyspace.Strong}
	for _, p := range s.cfg.Keyspaces {
		s.retry("bootstrap keyspace "+strconv.Quote(p.Prefix), func(ctx context.Context) error {
			ctx = auth.WithIdentity(ctx, auth.System)
			cur, err := s.svc.Keyspace(ctx, p.Prefix)
			switch {
			case err == nil && cur.Equal(p):
				return nil
			case err == nil && !(p.Prefix == "" && cur.Equal(builtin)):
				file, _ := json.Marshal(p)
				in, _ := json.Marshal(*cur)
				s.log.Warn("the config file's keyspace differs from the cluster's; the cluster's stays in force",
					"prefix", p.Prefix, "config", string(file), "cluster", string(in))
				return nil
			case err != nil && !errors.Is(err, kv.ErrNotFound):
				return err
			}
			ch, err := s.svc.PutKeyspace(ctx, p)
			switch kv.CodeOf(err) {
			case kv.CodeOK:
				s.log.Info("created keyspace from the config file", "prefix", p.Prefix, "mode", p.Mode, "pending", ch.Pending)
			case kv.CodeNoLeader, kv.CodeUnavailable:
				return err
			default: // conflict, invalid: retrying would not help
				s.log.Error("cannot create the config file's keyspace", "prefix", p.Prefix, "err", err)
			}
			return nil
		})
	}
}

func (s *Server) retry(what string, fn func(ctx context.Context) error) {
	delay := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		err := fn(ctx)
		cancel()
		if err == nil {
			return
		}
		s.log.Warn(what+" failed; retrying", "err", err, "in", delay)
		select {
		case <-s.done:
			return
		case <-time.After(delay):
		}
		if delay < 2*time.Second {
			delay *= 2
		}
	}
}

// join asks the member at cfg.Join to add this node.
func (s *Server) join(ctx context.Context) error {
	body, _ := json.Marshal(kv.MemberSpec{Name: s.cfg.Name, PeerAddr: s.advertisePeer(), ClientURL: s.ClientURL(),
		RESPAddr: s.RESPAddr(), NonVoter: s.cfg.JoinAsNonVoter})
	url := strings.TrimRight(s.cfg.Join, "/") + "/v1/cluster/members"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.joinClient().Do(req)
	if err != nil {
		return fmt.Errorf("server: join %s: %w", url, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("server: join %s: %s: %s", url, resp.Status, bytes.TrimSpace(msg))
	}
	s.log.Info("joined the cluster", "via", s.cfg.Join)
	return nil
}

// joinClient is the HTTP client of a join request. With a client certificate
// configured it presents it (its CN is this node's identity to the member
// asked, which needs admin once ACL rules are in force) and trusts
// trusted-ca-file besides the system roots.
func (s *Server) joinClient() *http.Client {
	if s.clientCerts == nil {
		return http.DefaultClient
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.cfg.TrustedCAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if pem, err := os.ReadFile(s.cfg.TrustedCAFile); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
		conf.RootCAs = pool
	}
	certs := s.clientCerts
	conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return certs.Certificate(), nil }
	return &http.Client{Transport: &http.Transport{TLSClientConfig: conf}, Timeout: s.cfg.RequestTimeout}
}

// Ready is closed once the node has a leader and has caught up.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Err delivers a fatal serving error.
func (s *Server) Err() <-chan error { return s.errc }

// Service is the node's kv service (for embedding programs and tests).
func (s *Server) Service() *kv.Service { return s.svc }

// PeerAddr is the advertised peer address.
func (s *Server) PeerAddr() string { return s.advertisePeer() }

// Name is the member name.
func (s *Server) Name() string { return s.cfg.Name }

// Close shuts the node down in reverse order of start: the client
// listeners first (no new requests), then the service, then the strong
// engine (its expiry loop, then Raft, which hands leadership away while the
// peer port still carries it, then the state database), then the peer port.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		for i := len(s.stops) - 1; i >= 0; i-- {
			if err := s.stops[i].fn(); err != nil && s.closeErr == nil && !errors.Is(err, net.ErrClosed) {
				s.closeErr = fmt.Errorf("server: stop %s: %w", s.stops[i].name, err)
			}
		}
		// Listeners a component opened but did not get to serve.
		for _, ln := range []net.Listener{s.respLn, s.httpLn, s.peerLn} {
			if ln != nil {
				_ = ln.Close()
			}
		}
		s.wg.Wait()
		s.log.Info("stopped")
	})
	return s.closeErr
}
