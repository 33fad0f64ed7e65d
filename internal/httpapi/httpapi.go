// Package httpapi is cairn's HTTP API v1 front end: values as raw bodies under
// /v1/kv/, JSON for listings, transactions and cluster administration, and the
// /healthz and /readyz probes. It translates HTTP requests into calls on the kv
// service and the service's errors into status codes; it holds no state of its
// own. docs/API.md is the wire contract.
package httpapi

import (
	"context"
	"iter"
	"log/slog"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// Service is what the HTTP API needs from the kv service (*kv.Service).
type Service interface {
	Get(ctx context.Context, key string, o kv.ReadOptions) (*kv.Record, error)
	List(ctx context.Context, prefix string, o kv.ListOptions) (*kv.ListResult, error)
	Put(ctx context.Context, key string, value []byte, o kv.PutOptions) (*kv.Record, error)
	Patch(ctx context.Context, key string, patch []byte) (*kv.Record, error)
	// Txn also serves DELETE, whose answer for an eventual key (its
	// timestamp and acks) only a transaction's result carries.
	Txn(ctx context.Context, t kv.Txn) (*kv.TxnResult, error)
	Ring(ctx context.Context, key string) (*kv.RingInfo, error)
	// EnsureKeyspace creates a policy unless its prefix has one (the Repose API's keyspace, on first use).
	EnsureKeyspace(ctx context.Context, p keyspace.Policy) error
	// Keyspaces is the policy table the service routes keys by; the API
	// reads it only to say how a read was served (X-Cairn-Consistency).
	Keyspaces() *keyspace.Table
	Members(ctx context.Context) ([]kv.Member, error)
	AddMember(ctx context.Context, m kv.MemberSpec) error
	RemoveMember(ctx context.Context, name string) error
	PromoteMember(ctx context.Context, name string) error
	TransferLeadership(ctx context.Context, to string) error
	Status(ctx context.Context) (*kv.Status, error)
	Ready() error
	ListKeyspaces(ctx context.Context) ([]keyspace.Policy, error)
	Keyspace(ctx context.Context, prefix string) (*keyspace.Policy, error)
	PutKeyspace(ctx context.Context, p keyspace.Policy) (*kv.KeyspaceChange, error)
	DeleteKeyspace(ctx context.Context, prefix string) (*kv.KeyspaceChange, error)
	// Watch streams the changes under a prefix, one command's events at a time.
	Watch(ctx context.Context, prefix string, fromRevision int64) (iter.Seq2[[]kv.Event, error], error)
}

// Options configure the handler returned by New.
type Options struct {
	// MaxValueBytes is the largest value a PUT, PATCH or transaction may carry;
	// 0 means DefaultMaxValueBytes. Larger bodies are refused with 413 before
	// the service is called.
	MaxValueBytes int64
	// Logger receives internal errors; nil discards them.
	Logger *slog.Logger
	// IsStale reports whether this node has lost contact with a leader, so
	// that serializable reads can say they may be out of date. It may be nil.
	IsStale func() bool
	// Authenticator checks Basic and Bearer credentials; nil refuses any
	// request that sends an Authorization header.
	Authenticator Authenticator
	// Admin serves /v1/auth/users and /v1/auth/rules; nil answers 501.
	Admin AuthAdmin
	// Inflight bounds requests served at once (429 over it); nil: no bound.
	Inflight *auth.Inflight
	// Pprof, if set, is served under /debug/pprof/ to admins (it needs
	// Admin to check who they are).
	Pprof http.Handler
	// ReposePrefix is the key prefix of the Repose datastore API: the
	// object /powerapi/dist-datastore/objects/{name} is the key
	// ReposePrefix+name. Empty means DefaultReposePrefix.
	ReposePrefix string
	// Closing, when closed, ends every watch stream (the node is shutting
	// down: the server's Shutdown waits for handlers, and a stream never ends
	// on its own).
	Closing <-chan struct{}
	// Version is the cairn version written into saved snapshots.
	Version string
	// Metrics, if set, is served at /metrics (Prometheus text), under the
	// access rules of metrics.go.
	Metrics http.Handler
	// UI, if set, is the dashboard's static files, served under /ui/.
	UI http.Handler
	// Registerer, if set, gets the API's own metrics (requests by route,
	// method and status class, their latencies, 429s, open watch streams;
	// see metrics.go). Nil: nothing is counted.
	Registerer prometheus.Registerer
}

// DefaultMaxValueBytes is the value limit when Options.MaxValueBytes is 0.
const DefaultMaxValueBytes = 1 << 20

// DefaultReposePrefix is the key prefix of the Repose datastore API when
// Options.ReposePrefix is empty.
const DefaultReposePrefix = "dist-datastore/"

const (
	kvPrefix = "/v1/kv/"
	// clusterBodyLimit bounds the JSON bodies of the cluster endpoints.
	clusterBodyLimit = 64 << 10
	// leaderWait bounds how long a leadership transfer waits to name the new
	// leader; leaderPoll is how often it asks.
	leaderWait = 2 * time.Second
	leaderPoll = 20 * time.Millisecond
)

// methods maps HTTP methods to the handlers of one path.
type methods map[string]http.HandlerFunc

type api struct {
	svc      Service
	maxValue int64
	isStale  func() bool
	log      *slog.Logger
	mux      *http.ServeMux
	// kv and kvAllow are the key routes' handlers and Allow header, for
	// ServeHTTP's own dispatch.
	kv      methods
	kvAllow string
	// keyspace and keyspaceAllow are the same for keyspace prefixes, and
	// repose and reposeAllow for Repose objects.
	keyspace      methods
	keyspaceAllow string
	repose        methods
	reposeAllow   string
	// reposePrefix is Options.ReposePrefix, defaulted.
	reposePrefix string
	// leaderWait is leaderWait, shortened by tests.
	leaderWait time.Duration
	authn      Authenticator
	admin      AuthAdmin
	inflight   *auth.Inflight
	// closing is Options.Closing; heartbeat is heartbeatInterval, shortened by tests.
	closing   <-chan struct{}
	heartbeat time.Duration
	version   string
	// reqs counts requests (nil without Options.Registerer).
	reqs *requestMetrics
}

// New returns the handler for every route of the HTTP API v1.
func New(svc Service, o Options) http.Handler {
	a := &api{svc: svc, maxValue: o.MaxValueBytes, isStale: o.IsStale, log: o.Logger, mux: http.NewServeMux(), leaderWait: leaderWait,
		authn: o.Authenticator, admin: o.Admin, inflight: o.Inflight, reposePrefix: o.ReposePrefix,
		closing: o.Closing, heartbeat: heartbeatInterval, version: o.Version}
	if a.reposePrefix == "" {
		a.reposePrefix = DefaultReposePrefix
	}
	if a.maxValue <= 0 {
		a.maxValue = DefaultMaxValueBytes
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if o.Registerer != nil {
		a.reqs = newRequestMetrics()
		if err := o.Registerer.Register(a.reqs); err != nil {
			a.log.Error("http api metrics not registered", "err", err)
			a.reqs = nil
		}
	}
	a.kv = methods{http.MethodGet: a.get, http.MethodPut: a.put, http.MethodDelete: a.del, http.MethodPatch: a.patch}
	a.kvAllow = a.handle(kvPrefix+"{key...}", a.kv)
	a.keyspace = methods{http.MethodGet: a.getKeyspace, http.MethodPut: a.putKeyspace, http.MethodDelete: a.deleteKeyspace}
	a.keyspaceAllow = a.handle(keyspacesPrefix+"{prefix...}", a.keyspace)
	a.handle("/v1/keyspaces", methods{http.MethodGet: a.listKeyspaces})
	a.handle("/v1/ring", methods{http.MethodGet: a.ring})
	a.repose = methods{http.MethodGet: a.reposeGet, http.MethodPut: a.reposePut, http.MethodDelete: a.reposeDelete, http.MethodPatch: a.reposePatch}
	a.reposeAllow = a.handle(reposeObjects+"{name...}", a.repose)
	a.handle("/v1/txn", methods{http.MethodPost: a.txn})
	a.handle(watchPrefix+"{prefix...}", methods{http.MethodGet: a.watch})
	a.handle("/v1/cluster/members", methods{http.MethodGet: a.members, http.MethodPost: a.addMember})
	a.handle("/v1/cluster/members/{name}", methods{http.MethodDelete: a.removeMember})
	a.handle("/v1/cluster/members/{name}/promote", methods{http.MethodPost: a.promote})
	a.handle("/v1/cluster/leader/transfer", methods{http.MethodPost: a.transfer})
	a.handle("/v1/cluster/status", methods{http.MethodGet: a.status})
	a.handle("/v1/snapshot", methods{http.MethodGet: a.snapshot})
	a.handle("/v1/auth/whoami", methods{http.MethodGet: a.whoami})
	if a.admin != nil {
		a.handle("/v1/auth/users", methods{http.MethodGet: a.listUsers})
		a.handle("/v1/auth/users/{name}", methods{http.MethodPut: a.putUser, http.MethodDelete: a.deleteUser})
		a.handle("/v1/auth/users/{name}/tokens", methods{http.MethodPost: a.addToken})
		a.handle("/v1/auth/users/{name}/tokens/{id}", methods{http.MethodDelete: a.deleteToken})
		a.handle("/v1/auth/rules", methods{http.MethodGet: a.getRules, http.MethodPut: a.putRules})
	} else {
		a.mux.HandleFunc("/v1/auth/", a.noAdmin)
	}
	if o.Pprof != nil && a.admin != nil {
		a.mux.Handle("/debug/pprof/", a.adminOnly(o.Pprof))
	}
	if o.Metrics != nil {
		a.handle("/metrics", methods{http.MethodGet: a.metrics(o.Metrics)})
	}
	if o.UI != nil {
		a.mux.Handle("GET /ui/", http.StripPrefix("/ui", o.UI))
		a.mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	}
	a.handle("/healthz", methods{http.MethodGet: a.healthz})
	a.handle("/readyz", methods{http.MethodGet: a.readyz})
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no route for "+r.URL.Path, nil)
	})
	return a
}

// handle registers one "METHOD path" pattern per method, and a pattern for
// every other method that answers 405 in JSON: the mux's own 405 is plain
// text, and the catch-all 404 route would otherwise win over it. It returns
// the Allow header of the path.
func (a *api) handle(pattern string, ms methods) string {
	allow := make([]string, 0, len(ms)+1)
	for m, h := range ms {
		a.mux.HandleFunc(m+" "+pattern, h)
		allow = append(allow, m)
		if m == http.MethodGet {
			allow = append(allow, http.MethodHead)
		}
	}
	sort.Strings(allow)
	allowed := strings.Join(allow, ", ")
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		methodNotAllowed(w, r, allowed)
	})
	return allowed
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allowed string) {
	w.Header().Set("Allow", allowed)
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; use "+allowed, nil)
}

// ServeHTTP routes through the mux, except for key (and keyspace) paths the mux would
// "clean" (a//b, a/./b, a/../b): it redirects those to another path, which
// names another key, so they are dispatched here with the key as sent.
//
// Before routing it sheds load over the in-flight bound (health checks
// excepted) and establishes the caller's identity, which travels in the
// request context to the kv service, where access is decided.
func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.reqs != nil {
		sw := &statusWriter{ResponseWriter: w}
		defer a.reqs.done(r, sw, time.Now())
		w = sw
	}
	if p := r.URL.Path; p != "/healthz" && p != "/readyz" {
		if !a.inflight.TryAcquire() {
			a.reqs.refuse()
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, "too_many_requests", "this node is serving as many requests as it may; retry shortly", nil)
			return
		}
		defer a.inflight.Release()
	}
	id, err := a.identify(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Basic realm="cairn", charset="UTF-8"`)
		writeError(w, http.StatusUnauthorized, "unauthenticated", "wrong user name, password or token", nil)
		return
	}
	r = r.WithContext(auth.WithIdentity(r.Context(), id))
	if a.unauthenticated(r) {
		r.Body = http.MaxBytesReader(w, r.Body, unauthBodyLimit)
	}
	if r.Method != http.MethodConnect {
		if p := r.URL.EscapedPath(); !isCleanPath(p) {
			if ms, allow, ok := a.uncleanRoute(r); ok {
				method := r.Method
				if method == http.MethodHead {
					method = http.MethodGet
				}
				h, ok := ms[method]
				if !ok {
					methodNotAllowed(w, r, allow)
					return
				}
				h(w, r)
				return
			}
		}
	}
	a.mux.ServeHTTP(w, r)
}

// unauthenticated reports whether r comes from an anonymous client while
// the node requires authentication: its body is bounded by unauthBodyLimit.
func (a *api) unauthenticated(r *http.Request) bool {
	return auth.FromContext(r.Context()).Via == "anonymous" && a.authn != nil && a.authn.AuthRequired()
}

// isCleanPath reports whether http.ServeMux would serve p as it is rather
// than redirect it; it mirrors the unexported net/http.cleanPath.
func isCleanPath(p string) bool {
	np := path.Clean(p)
	if strings.HasSuffix(p, "/") && np != "/" {
		np += "/"
	}
	return np == p
}
