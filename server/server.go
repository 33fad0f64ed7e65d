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
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/config"
	"github.com/cairnkv/cairn/internal/httpapi"
	"github.com/cairnkv/cairn/internal/peer"
	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/internal/respapi"
	"github.com/cairnkv/cairn/internal/store"
	"github.com/cairnkv/cairn/internal/testhook"
	"github.com/cairnkv/cairn/kv"
)

// Version is cairn's version, reported by `cairn version`, INFO and VERSION.
var Version = "0.1.0-dev"

// Server is one running cairn node.
type Server struct {
	cfg config.Config
	log *slog.Logger

	faults  *peer.Faults
	peerLn  net.Listener
	mux     *peer.Mux
	stateDB *store.DB
	machine *kv.Machine
	node    *raftnode.Node
	svc     *kv.Service
	httpLn  net.Listener
	http    *http.Server
	respLn  net.Listener
	resp    *respapi.Server

	// clientCerts is the client and RESP ports' certificate (nil: no TLS).
	clientCerts *auth.Certs

	ready     chan struct{}
	errc      chan error
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
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
	hooks := testhook.From(ctx)
	if hooks == nil {
		hooks = &testhook.Hooks{}
	}
	if hooks.Faults == nil {
		hooks.Faults = &peer.Faults{}
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("node", cfg.Name), faults: hooks.Faults,
		ready: make(chan struct{}), errc: make(chan error, 4), stop: make(chan struct{})}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	dialer := &peer.Dialer{Faults: s.faults}
	muxTLS := dialer.TLS
	if cfg.PeerCertFile != "" {
		certs, err := auth.LoadCerts(cfg.PeerCertFile, cfg.PeerKeyFile, cfg.PeerTrustedCAFile)
		if err != nil {
			return nil, err
		}
		certs.OnError = s.certReloadFailed("peer")
		var allowedCN *regexp.Regexp
		if cfg.PeerCertAllowedCN != "" {
			allowedCN = regexp.MustCompile("^(?:" + cfg.PeerCertAllowedCN + ")$") // checked by Validate
		}
		muxTLS, dialer.TLS = auth.PeerTLS(certs, allowedCN)
	}
	if cfg.CertFile != "" {
		if s.clientCerts, err = auth.LoadCerts(cfg.CertFile, cfg.KeyFile, cfg.TrustedCAFile); err != nil {
			return nil, err
		}
		s.clientCerts.OnError = s.certReloadFailed("client")
	}
	allowed, err := auth.ParseHosts(cfg.AllowedHosts)
	if err != nil {
		return nil, err
	}
	inflight := auth.NewInflight(int(cfg.MaxInflightRequests))

	if s.peerLn = cfg.PeerListener; s.peerLn == nil {
		if s.peerLn, err = net.Listen("tcp", cfg.ListenPeer); err != nil {
			return nil, fmt.Errorf("server: listen peer: %w", err)
		}
	}
	s.mux = peer.NewMux(s.peerLn, muxTLS, s.faults, s.log.With("subsystem", "peer"))

	if s.stateDB, err = store.Open(filepath.Join(cfg.DataDir, "state"), store.Options{Logger: s.log}); err != nil {
		return nil, err
	}
	if s.machine, err = kv.NewMachine(s.stateDB); err != nil {
		return nil, err
	}

	var boot []raftnode.Peer
	if cfg.Join == "" && cfg.InitialClusterState == "new" {
		members, err := cfg.InitialMembers()
		if err != nil {
			return nil, err
		}
		for _, m := range members {
			boot = append(boot, raftnode.Peer{ID: m.Name, Addr: m.Addr})
		}
	}
	s.node, err = raftnode.Start(raftnode.Config{
		ID:               cfg.Name,
		Dir:              cfg.DataDir,
		AdvertiseAddr:    s.advertisePeer(),
		Mux:              s.mux,
		Dialer:           dialer,
		StateDB:          s.stateDB,
		StateMachine:     s.machine,
		Bootstrap:        boot,
		HeartbeatTimeout: cfg.HeartbeatTimeout,
		ElectionTimeout:  cfg.ElectionTimeout,
		RequestTimeout:   cfg.RequestTimeout,
		SnapshotEntries:  cfg.SnapshotEntries,
		SnapshotInterval: cfg.SnapshotInterval,
		TrailingLogs:     cfg.TrailingLogs,
		Logger:           s.log,
	})
	if err != nil {
		return nil, err
	}
	hooks.Raft = s.node
	s.goServe("peer mux", s.mux.Serve)

	s.svc = kv.NewService(kv.Config{
		Name:                cfg.Name,
		MaxValueBytes:       cfg.MaxValueBytes,
		RequestTimeout:      cfg.RequestTimeout,
		Logger:              s.log,
		UnsafeFollowerReads: debugUnsafeReads(),
		AuthUsers:           cfg.Auth.Users,
		AuthRules:           cfg.Auth.Rules,
	}, s.stateDB, s.machine, s.node)
	hooks.Digest = s.svc.Digest

	if s.httpLn = cfg.ClientListener; s.httpLn == nil {
		if s.httpLn, err = net.Listen("tcp", cfg.ListenClient); err != nil {
			return nil, fmt.Errorf("server: listen client: %w", err)
		}
	}
	s.httpLn = s.guard(s.httpLn, allowed, nil, "http/1.1")
	s.http = &http.Server{
		Handler: s.withDebug(httpapi.New(s.svc, httpapi.Options{
			MaxValueBytes: cfg.MaxValueBytes,
			Logger:        s.log.With("subsystem", "http"),
			IsStale:       s.svc.IsStale,
			Authenticator: s.svc,
			Admin:         s.svc,
			Inflight:      inflight,
			Pprof:         pprofIf(cfg.EnablePprof),
		})),
		ReadHeaderTimeout: min(10*time.Second, positive(cfg.ReadTimeout)),
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      positive(cfg.ReadTimeout) + cfg.RequestTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.goServe("client http", func() error {
		if err := s.http.Serve(s.httpLn); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})

	if s.respLn = cfg.RESPListener; s.respLn == nil {
		if s.respLn, err = net.Listen("tcp", cfg.ListenResp); err != nil {
			return nil, fmt.Errorf("server: listen resp: %w", err)
		}
	}
	s.respLn = s.guard(s.respLn, allowed, func(c net.Conn) {
		_, _ = c.Write([]byte("-ERR max number of clients reached\r\n"))
	})
	s.resp = respapi.New(s.svc, respapi.Options{
		MaxValueBytes: cfg.MaxValueBytes,
		Logger:        s.log,
		Version:       Version,
		Auth:          s.svc,
		Inflight:      inflight,
		ReadTimeout:   cfg.ReadTimeout,
		IdleTimeout:   cfg.IdleTimeout,
	})
	s.goServe("resp", func() error { return s.resp.Serve(s.respLn) })

	s.wg.Add(1)
	go s.becomeReady()
	s.log.Info("cairn started", "client", s.ClientURL(), "peer", s.advertisePeer(), "data_dir", cfg.DataDir,
		"restarted", s.node.HadState())
	return s, nil
}

// guard applies allowed_hosts and max-connections to a client listener, then
// TLS when a certificate is configured. refuse tells a client over the
// connection limit why it is dropped.
func (s *Server) guard(ln net.Listener, allowed []netip.Prefix, refuse func(net.Conn), nextProtos ...string) net.Listener {
	ln = auth.GuardListener(ln, auth.GuardOptions{
		AllowedHosts: allowed,
		MaxConns:     int(s.cfg.MaxConnections),
		Refuse:       refuse,
		OnReject: func(remote net.Addr, reason string) {
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
	if s.cfg.Join != "" && !s.node.HadState() {
		s.retry("join", func(ctx context.Context) error { return s.join(ctx) })
	}
	for {
		if s.svc.Ready() == nil {
			break
		}
		select {
		case <-s.stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	self := kv.Member{Name: s.cfg.Name, PeerAddr: s.advertisePeer(), ClientURL: s.ClientURL(), RESPAddr: s.RESPAddr()}
	s.retry("publish member addresses", func(ctx context.Context) error { return s.svc.PublishSelf(ctx, self) })
	select {
	case <-s.stop:
	default:
		close(s.ready)
		s.log.Info("ready")
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
		case <-s.stop:
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

// Close shuts the node down in reverse order of start: client listeners first
// (no new requests), then the kv service's background work, then Raft (which
// hands leadership away first), then the peer mux, then the store.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		if s.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = s.http.Shutdown(ctx)
			cancel()
		} else if s.httpLn != nil {
			_ = s.httpLn.Close()
		}
		if s.resp != nil {
			_ = s.resp.Close()
		} else if s.respLn != nil {
			_ = s.respLn.Close()
		}
		if s.svc != nil {
			s.svc.Close()
		}
		if s.node != nil {
			if err := s.node.Close(); err != nil {
				s.closeErr = err
			}
		}
		if s.mux != nil {
			_ = s.mux.Close()
		} else if s.peerLn != nil {
			_ = s.peerLn.Close()
		}
		s.wg.Wait()
		if s.stateDB != nil {
			if err := s.stateDB.Close(); err != nil && s.closeErr == nil {
				s.closeErr = err
			}
		}
		s.log.Info("stopped")
	})
	return s.closeErr
}
