package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cairnkv/cairn/test/model"
)

// The mirror check of a run. When Config.Mirror is set, one keyspace of
// the run has a backup mirror (`backup: s3://…` in its policy, package
// internal/backup/mirror) whose bucket is a MirrorBucket in the test
// process, which the bucket-down fault takes down while the clients
// write. Once the replicas agree (an eventual run: converged; a strong
// run: identical) and the bucket is up, the bucket must hold exactly the
// keyspace's live keys with their values within MirrorCheck.Within: every
// write the cluster took, through every fault, was copied in the end, and
// no delete was left behind. The nodes' hourly reconcile is not due during
// a run, so what is checked is the copy of each write (the eventual
// outbox and its first healthy owner; the strong leader's watch and its
// cursor in Raft), not the repair of what it missed.

// MirrorCheck names the mirrored keyspace of a run and its bucket.
type MirrorCheck struct {
	// Prefix is the mirrored keyspace: for an eventual run one of
	// EventualConfig.Keyspaces whose Backup is Bucket.URL; a strong run
	// (Run) creates it as a strong keyspace mirrored to Bucket.
	Prefix string
	Bucket *MirrorBucket
	// Within is how long after the replicas agree the bucket may take
	// (default 20 s).
	Within time.Duration
}

// MirrorKeyspace is an eventual keyspace mirrored to the bucket at
// backupURL: three replicas, acknowledged after one, so that writes land
// on both sides of a partition and each side's first healthy owner
// copies them.
func MirrorKeyspace(prefix, backupURL string) EventualKeyspace {
	return EventualKeyspace{Prefix: prefix, Replicas: 3, WriteQuorum: 1, ReadQuorum: 1, Backup: backupURL}
}

// MirrorBucket is an S3 server in the test process (gofakes3 with an
// in-memory backend, over HTTP on 127.0.0.1, which node processes reach
// over loopback) with one bucket. Down makes it answer every request with
// 503 until Up.
type MirrorBucket struct {
	// URL is the bucket as a policy's backup names it.
	URL  string
	name string
	cli  *minio.Client
	down atomic.Bool
	// refused counts the requests answered 503.
	refused atomic.Int64

	mu  sync.Mutex
	ops map[string][]bucketOp // the object writes and deletes of each key
}

// bucketOp is one write or delete of an object, as the bucket answered it.
type bucketOp struct {
	at     time.Time
	method string
	status int
}

// statusWriter keeps the status of an answer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Credentials of the MirrorBucket's S3 server (gofakes3 takes any).
const (
	mirrorKeyID  = "cairn-chaos"
	mirrorSecret = "cairn-chaos-secret"
)

// NewMirrorBucket starts a MirrorBucket for the test and sets
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for it (t.Setenv: nodes
// started afterwards, in process or as processes, which inherit the
// environment, read them). It stops when the test ends.
func NewMirrorBucket(t testing.TB) *MirrorBucket {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", mirrorKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", mirrorSecret)
	b := &MirrorBucket{name: "cairn-mirror", ops: map[string][]bucketOp{}}
	s3 := gofakes3.New(s3mem.New(), gofakes3.WithLogger(gofakes3.DiscardLog())).Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, object := strings.CutPrefix(r.URL.Path, "/"+b.name+"/")
		object = object && (r.Method == http.MethodPut || r.Method == http.MethodDelete)
		sw := &statusWriter{ResponseWriter: w}
		if b.down.Load() {
			b.refused.Add(1)
			http.Error(sw, "the bucket is down (bucket-down fault)", http.StatusServiceUnavailable)
		} else {
			s3.ServeHTTP(sw, r)
		}
		if sw.status == 0 {
			sw.status = http.StatusOK // an answer without a body or a WriteHeader
		}
		if object {
			b.mu.Lock()
			b.ops[key] = append(b.ops[key], bucketOp{at: time.Now(), method: r.Method, status: sw.status})
			b.mu.Unlock()
		}
	}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b.cli, err = minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(mirrorKeyID, mirrorSecret, ""),
		BucketLookup: minio.BucketLookupPath, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cli.MakeBucket(context.Background(), b.name, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	b.URL = "s3://" + b.name + "?endpoint=" + u.Host + "&path_style=true&insecure=true"
	return b
}

// Down makes the bucket answer 503 to every request; Up brings it back.
func (b *MirrorBucket) Down() { b.down.Store(true) }

// Up brings the bucket back after Down.
func (b *MirrorBucket) Up() { b.down.Store(false) }

// Refused counts the requests the bucket answered 503 so far.
func (b *MirrorBucket) Refused() int64 { return b.refused.Load() }

// history describes the last writes and deletes of key the bucket saw,
// with their times since start.
func (b *MirrorBucket) history(key string, start time.Time) string {
	b.mu.Lock()
	ops := b.ops[key]
	b.mu.Unlock()
	if len(ops) == 0 {
		return "the bucket saw no write or delete of it"
	}
	var parts []string
	for _, o := range ops[max(0, len(ops)-4):] {
		parts = append(parts, fmt.Sprintf("%s %d at +%.2fs", o.method, o.status, o.at.Sub(start).Seconds()))
	}
	return fmt.Sprintf("the bucket's last of %d writes and deletes: %s", len(ops), strings.Join(parts, ", "))
}

// mirrorObject is one object of the bucket.
type mirrorObject struct {
	value   string
	expires int64 // its cairn-expires metadata (unix ns), 0 if none
}

// objects lists the bucket's objects under prefix and reads each one.
func (b *MirrorBucket) objects(ctx context.Context, prefix string) (map[string]mirrorObject, error) {
	out := map[string]mirrorObject{}
	for o := range b.cli.ListObjects(ctx, b.name, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("list the bucket: %w", o.Err)
		}
		obj, err := b.cli.GetObject(ctx, b.name, o.Key, minio.GetObjectOptions{})
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", o.Key, err)
		}
		var body bytes.Buffer
		_, err = body.ReadFrom(obj)
		var st minio.ObjectInfo
		if err == nil {
			st, err = obj.Stat()
		}
		obj.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", o.Key, err)
		}
		mo := mirrorObject{value: body.String()}
		for k, v := range st.UserMetadata {
			if strings.EqualFold(k, "cairn-expires") || strings.EqualFold(k, "x-amz-meta-cairn-expires") {
				mo.expires, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		out[o.Key] = mo
	}
	return out, nil
}

// mirrorDiff describes how the objects differ from want (key → value), ""
// when they do not. An object whose key expired is as good as none (the
// mirror leaves it, and reads from the bucket treat it as gone), unless
// want still holds its value (it expired after the end state was read).
// history, when set, says what the bucket saw of a key that differs.
func mirrorDiff(got map[string]mirrorObject, want map[string]string, now time.Time, history func(key string) string) string {
	var diffs []string
	note := func(key, d string) {
		if history != nil {
			d += " (" + history(key) + ")"
		}
		diffs = append(diffs, d)
	}
	for k, v := range want {
		switch o, ok := got[k]; {
		case !ok:
			note(k, fmt.Sprintf("%s missing (the key holds %q)", k, v))
		case o.value != v:
			note(k, fmt.Sprintf("%s holds %q, the key %q", k, o.value, v))
		}
	}
	for k, o := range got {
		if _, ok := want[k]; ok || (o.expires != 0 && o.expires <= now.UnixNano()) {
			continue
		}
		note(k, fmt.Sprintf("%s holds %q, the key is gone", k, o.value))
	}
	sort.Strings(diffs)
	if len(diffs) > 4 {
		diffs = append(diffs[:4], fmt.Sprintf("and %d more", len(diffs)-4))
	}
	return strings.Join(diffs, "; ")
}

// checkMirror compares the bucket with want (the keyspace's live keys
// and values), polling until they match or m.Within is up. It returns the
// failures and how long it took; their times are since runStart.
func checkMirror(m *MirrorCheck, want map[string]string, runStart time.Time) (failures []string, took time.Duration) {
	within := m.Within
	if within <= 0 {
		within = 20 * time.Second
	}
	m.Bucket.Up()
	start := time.Now()
	var diff string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		got, err := m.Bucket.objects(ctx, m.Prefix)
		cancel()
		if err != nil {
			diff = err.Error()
		} else {
			diff = mirrorDiff(got, want, time.Now(), nil)
		}
		if diff == "" || time.Since(start) > within {
			if err == nil && diff != "" {
				diff = mirrorDiff(got, want, time.Now(), func(key string) string { return m.Bucket.history(key, runStart) })
			}
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if diff != "" {
		failures = append(failures, fmt.Sprintf("the mirror bucket of %s (%d live keys) differs from the keyspace %s after the replicas agreed: %s",
			m.Prefix, len(want), time.Since(start).Round(100*time.Millisecond), diff))
	}
	return failures, time.Since(start)
}

// liveValues are the keys under prefix that some replica holds a live
// version of in final (converged: all of them the same), and their values.
func liveValues(final []model.KeyState, prefix string) map[string]string {
	want := map[string]string{}
	for _, k := range final {
		if !strings.HasPrefix(k.Key, prefix) {
			continue
		}
		for _, r := range k.Replicas {
			if r.Present {
				want[k.Key] = r.Value
				break
			}
		}
	}
	return want
}

// mirroredDuringOutage counts the acknowledged writes under prefix that
// were made while the bucket was down (between a bucket-down fault's
// start and its end).
func mirroredDuringOutage(writes []model.Write, faults []FaultRecord, prefix string) int {
	n := 0
	for _, w := range writes {
		if w.Outcome != model.WriteAcked || !strings.HasPrefix(w.Key, prefix) {
			continue
		}
		for _, f := range faults {
			if f.Kind == FaultBucketDown && f.Err == "" && w.Call >= f.Start && w.Return <= f.End {
				n++
				break
			}
		}
	}
	return n
}

// CheckerCatchesMirrorDrift proves the mirror check can fail, on a
// cluster c whose mirrors are built to lose writes (the
// cairn_broken_mirror build gives up a write the bucket refused once): an
// eventual run with cfg, whose bucket goes down while the clients write
// and stays down for cfg.FinalTail (default 6 s) after they stopped
// (cfg.Final is the bucket-down fault unless set: the mirrors try the
// last writes of each key while it is down, and no later write hides
// what they dropped), must converge, and the bucket must differ from the
// converged keyspace. Anything else proves nothing and fails the test.
func CheckerCatchesMirrorDrift(t *testing.T, c Cluster, dir string, cfg EventualConfig) *EventualResult {
	t.Helper()
	cfg.OutDir, cfg.Logf = dir, t.Logf
	if cfg.Mirror == nil {
		t.Fatal("CheckerCatchesMirrorDrift needs a run with Mirror")
	}
	if cfg.Final == nil {
		cfg.Final = []string{FaultBucketDown}
	}
	if cfg.FinalTail <= 0 {
		cfg.FinalTail = 6 * time.Second
	}
	res := RunEventual(c, cfg)
	writeReport(t, dir, res)
	if !res.Convergence.OK() {
		t.Fatalf("the run did not converge, so the mirror check did not run: %s", strings.Join(res.Failures, "; "))
	}
	during := mirroredDuringOutage(res.Writes, res.Faults, cfg.Mirror.Prefix)
	if during == 0 {
		t.Fatalf("no write of %s was acknowledged while the bucket was down: the run proves nothing", cfg.Mirror.Prefix)
	}
	if len(res.MirrorFailures) == 0 {
		t.Fatalf("the mirror check passed on nodes built to drop the writes the bucket refused (%d acknowledged while it was down): the check, or the broken build, is wrong", during)
	}
	t.Logf("caught, as it must be: %d writes of %s acknowledged while the bucket was down; %s", during, cfg.Mirror.Prefix, res.MirrorFailures[0])
	return res
}

// createStrongMirror makes m.Prefix a strong keyspace mirrored to
// m.Bucket (PUT /v1/keyspaces/{prefix}), retrying for up to 20 s while
// the cluster has no leader.
func createStrongMirror(c Cluster, m *MirrorCheck) error {
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	body, _ := json.Marshal(map[string]any{"mode": "strong", "backup": m.Bucket.URL})
	path := "/v1/keyspaces/" + escapePath(m.Prefix)
	deadline := time.Now().Add(20 * time.Second)
	var last error
	for n := 0; time.Now().Before(deadline); n++ {
		live := c.Live()
		if len(live) == 0 {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		node := c.Node(live[n%len(live)])
		a := httpDo(hc, http.MethodPut, node.ClientURL+path, body)
		switch {
		case a.err != nil:
			last = a.err
		case a.status == http.StatusOK:
			return nil
		case a.status == http.StatusServiceUnavailable:
			last = fmt.Errorf("PUT %s on %s: %d %s", path, node.Name, a.status, bytes.TrimSpace(a.body))
		default:
			return fmt.Errorf("harness: PUT %s %s on %s: %d %s", path, body, node.Name, a.status, bytes.TrimSpace(a.body))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("harness: mirrored keyspace %s not created in 20 s: %w", m.Prefix, last)
}

// linearizableValues lists the keys under prefix and their values with a
// linearizable read (GET /v1/kv/{prefix}?list=true), through any live
// node, for up to 10 s.
func linearizableValues(c Cluster, prefix string) (map[string]string, error) {
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	var last error
	for n := 0; time.Now().Before(deadline); n++ {
		live := c.Live()
		if len(live) == 0 {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		node := c.Node(live[n%len(live)])
		a := httpDo(hc, http.MethodGet, node.ClientURL+"/v1/kv/"+escapePath(prefix)+"?list=true", nil)
		if a.err != nil || a.status != http.StatusOK {
			last = fmt.Errorf("list %s on %s: %d %s %v", prefix, node.Name, a.status, bytes.TrimSpace(a.body), a.err)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		var out struct {
			Items []model.Item `json:"items"`
			More  bool         `json:"more"`
		}
		if err := json.Unmarshal(a.body, &out); err != nil {
			return nil, fmt.Errorf("list %s on %s: %w", prefix, node.Name, err)
		}
		if out.More {
			return nil, fmt.Errorf("list %s on %s was cut short", prefix, node.Name)
		}
		want := map[string]string{}
		for _, it := range out.Items {
			want[it.Key] = string(it.Value)
		}
		return want, nil
	}
	return nil, last
}
