// Package kvtest starts a real single-node cairn service for the tests of
// the front ends: the strong engine with real Raft and real pebble in the
// test's temporary directory, its peer port on a loopback address, and the kv
// service over it. A front end tested this way is checked against what the
// engine does (revisions, TTLs, transactions, errors), not against what a fake
// believes the engine does.
//
//	svc := kvtest.NewService(t)               // ready, closed in t.Cleanup
//	srv := respapi.New(svc, respapi.Options{}) // or httpapi.New(svc, …)
//
// With Eventual, a stand-in for the eventual engine (FakeEventual) serves
// the node's eventual keyspaces, so front ends can show what they answer
// about eventual keys (timestamps, acks, refusals) on a single node.
//
// It imports no front end, so the front ends' own (internal) tests can use it.
package kvtest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/internal/peer"
	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/internal/strong"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// Name is the member name of the node NewService starts.
const Name = "n1"

// Timeouts of the node: short, so that the single voter elects itself within
// a few of them, even under the race detector on a busy machine. A single
// voter cannot lose leadership, so they cost no stability.
const (
	heartbeatTimeout = 10 * time.Millisecond
	electionTimeout  = 10 * time.Millisecond
	requestTimeout   = 5 * time.Second
	readyTimeout     = 20 * time.Second
)

// Option configures the node NewService starts.
type Option func(*options)

type options struct {
	kv       kv.Config
	expiry   time.Duration
	level    slog.Level
	eventual *FakeEventual
}

// Users sets the config file's users (kv.Config.AuthUsers).
func Users(users ...auth.User) Option {
	return func(o *options) { o.kv.AuthUsers = append(o.kv.AuthUsers, users...) }
}

// Rules sets the config file's ACL rules (kv.Config.AuthRules).
func Rules(rules ...auth.Rule) Option {
	return func(o *options) { o.kv.AuthRules = append(o.kv.AuthRules, rules...) }
}

// MaxValueBytes sets the service's value limit (kv.Config.MaxValueBytes;
// default 1 MiB).
func MaxValueBytes(n int64) Option {
	return func(o *options) { o.kv.MaxValueBytes = n }
}

// ExpiryInterval sets how often the leader sweeps expired keys out of the
// store (default 200 ms, as in a server). A long interval keeps expired
// records on disk for the test's duration, to show that reads hide them.
func ExpiryInterval(d time.Duration) Option {
	return func(o *options) { o.expiry = d }
}

// LogLevel sets the lowest level of the node's logs routed to t.Log
// (default slog.LevelWarn: Raft's routine election messages are noise in a
// failing test's output).
func LogLevel(l slog.Level) Option {
	return func(o *options) { o.level = l }
}

// NewService starts a single-node cluster named Name in t.TempDir(), waits
// until it is ready (it has elected itself), and returns its kv service.
// Everything it started is closed in t.Cleanup. The node's logs go to t.Log.
func NewService(t testing.TB, opts ...Option) *kv.Service {
	t.Helper()
	o := options{level: slog.LevelWarn}
	for _, opt := range opts {
		opt(&o)
	}
	// The data directory is made before any cleanup that uses it is
	// registered: cleanups run last-first, so it is removed after the
	// engine has closed over it, not under a running engine.
	dir := t.TempDir()
	sink := &logSink{t: t}
	log := slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: o.level})).With("node", Name)
	// Registered first, so it runs last: logs of the shutdown still reach t.
	t.Cleanup(sink.stop)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("kvtest: listen peer: %v", err)
	}
	addr := ln.Addr().String()
	mux := peer.NewMux(ln, nil, nil, log.With("subsystem", "peer"))
	served := make(chan error, 1)
	started := false
	// Close in the order a server keeps: the engine (Raft hands leadership
	// away while the peer port still carries it), then the peer port.
	var eng *strong.Engine
	t.Cleanup(func() {
		if eng != nil {
			if err := eng.Close(); err != nil {
				t.Errorf("kvtest: close engine: %v", err)
			}
		}
		if err := mux.Close(); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, peer.ErrClosed) {
			t.Errorf("kvtest: close peer port: %v", err)
		}
		if started {
			if err := <-served; err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, peer.ErrClosed) {
				t.Errorf("kvtest: peer port: %v", err)
			}
		}
	})

	eng, err = strong.Open(strong.Config{
		Name: Name,
		Dir:  dir,
		Raft: raftnode.Config{
			ID:               Name,
			Dir:              dir,
			AdvertiseAddr:    addr,
			Mux:              mux,
			Dialer:           &peer.Dialer{},
			Bootstrap:        []raftnode.Peer{{ID: Name, Addr: addr}},
			HeartbeatTimeout: heartbeatTimeout,
			ElectionTimeout:  electionTimeout,
			SnapshotEntries:  8192,
			SnapshotInterval: time.Hour, // snapshots only when a test asks
			TrailingLogs:     10240,
		},
		RequestTimeout: requestTimeout,
		ExpiryInterval: o.expiry,
		Logger:         log,
	})
	if err != nil {
		t.Fatalf("kvtest: open the strong engine: %v", err)
	}
	started = true
	go func() { served <- mux.Serve() }()

	o.kv.Logger = log
	engines := map[keyspace.Mode]kv.Engine{keyspace.Strong: eng}
	if o.eventual != nil {
		o.eventual.init()
		engines[keyspace.Eventual] = o.eventual
	}
	svc := kv.NewService(o.kv, engines, eng)
	waitReady(t, svc)
	return svc
}

// waitReady polls until svc is ready.
func waitReady(t testing.TB, svc *kv.Service) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := svc.Ready()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("kvtest: the node is not ready after %s: %v", readyTimeout, err)
		case <-tick.C:
		}
	}
}

// logSink writes log lines to t.Log until the test's cleanup ends; a
// goroutine that logs later (t.Log would panic then) is ignored.
type logSink struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func (s *logSink) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
}

// Ctx is a context for a test's own calls on the service, to set up state
// or look at it: it carries cairn's system identity, which every ACL rule
// allows, is bounded so that a hung call fails the test instead of the run,
// and is canceled when the test ends.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(auth.WithIdentity(context.Background(), auth.System), 2*requestTimeout)
	t.Cleanup(cancel)
	return ctx
}

// User is a config-file user with password, for Users. Its hash is bcrypt's
// cheapest, so that a test's wrong passwords cost microseconds, not the
// tenths of a second of auth.BcryptCost.
func User(t testing.TB, name, password string) auth.User {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatalf("kvtest: hash the password of %s: %v", name, err)
	}
	return auth.User{Name: name, PasswordHash: string(h)}
}

// MustPut writes key directly through the service (to set up a test's
// state) and returns the record.
func MustPut(t testing.TB, svc *kv.Service, key, value string, o kv.PutOptions) *kv.Record {
	t.Helper()
	r, err := svc.Put(Ctx(t), key, []byte(value), o)
	if err != nil {
		t.Fatalf("kvtest: put %q: %v", key, err)
	}
	return r
}

// MustTxn runs a transaction directly through the service.
func MustTxn(t testing.TB, svc *kv.Service, txn kv.Txn) *kv.TxnResult {
	t.Helper()
	r, err := svc.Txn(Ctx(t), txn)
	if err != nil {
		t.Fatalf("kvtest: txn: %v", err)
	}
	return r
}

// MustRevision is the node's current revision.
func MustRevision(t testing.TB, svc *kv.Service) int64 {
	t.Helper()
	st, err := svc.Status(Ctx(t))
	if err != nil {
		t.Fatalf("kvtest: status: %v", err)
	}
	return st.Revision
}
