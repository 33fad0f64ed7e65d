package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairnkv/cairn/test/model"
)

// The eventual run: writers and deletes on every node of eventual
// keyspaces while the nemesis partitions, kills, pauses and restarts nodes
// (both sides of a partition keep writing); then, once every node is back,
// each key's replicas are read locally until test/model's convergence check
// passes or three anti-entropy intervals (and a margin) have gone by. There
// is no history to linearize: what is checked is the end state against
// every write attempted (model.CheckConvergence), and every value a read
// returned (model.CheckEventualReads).

// EventualKeyspace is one eventual keyspace policy a run creates (or finds)
// and writes to.
type EventualKeyspace struct {
	Prefix      string
	Replicas    int
	WriteQuorum int
	ReadQuorum  int
	// NoSloppy turns the policy's sloppy_quorum off: no node outside a key's
	// preference list takes its writes (and hints).
	NoSloppy bool
	// Backup, when set, is the policy's backup: the bucket URL its writes
	// are mirrored to (see MirrorCheck).
	Backup string
}

func (k EventualKeyspace) String() string {
	n := strconv.Itoa(k.Replicas)
	if k.Replicas == 0 {
		n = "all"
	}
	s := fmt.Sprintf("%s (N=%s W=%d R=%d", k.Prefix, n, k.WriteQuorum, k.ReadQuorum)
	if k.NoSloppy {
		s += ", strict quorum"
	}
	if k.Backup != "" {
		s += ", mirrored"
	}
	return s + ")"
}

// policy is the body of PUT /v1/keyspaces/{prefix}.
func (k EventualKeyspace) policy() map[string]any {
	p := map[string]any{"mode": "eventual", "replicas": k.Replicas, "write_quorum": k.WriteQuorum, "read_quorum": k.ReadQuorum}
	if k.Replicas == 0 {
		p["replicas"] = "all"
	}
	if k.NoSloppy {
		p["sloppy_quorum"] = false
	}
	if k.Backup != "" {
		p["backup"] = k.Backup
	}
	return p
}

// DefaultEventualKeyspaces are the keyspaces of a run that names none: one
// that acknowledges after one replica (writes go on on both sides of any
// partition, and on a node cut off from everyone), one after two (the
// minority side of a partition answers 503, an unknown outcome).
var DefaultEventualKeyspaces = []EventualKeyspace{
	{Prefix: "ev/", Replicas: 3, WriteQuorum: 1, ReadQuorum: 1},
	{Prefix: "evq/", Replicas: 3, WriteQuorum: 2, ReadQuorum: 1},
}

// EventualFaults are the fault kinds of an eventual run: partitions of
// every shape, one-way drops, latency, restarts, kill -9, SIGSTOP, clock
// skew within the bound, and a spare that joins (its ranges move to it)
// and is removed again (they move back). Leadership transfers and
// snapshots, which only the strong engine sees, and the re-adds of a wiped
// bootstrap member are left out; so is the bucket outage
// (FaultBucketDown), which only a run with a mirror can make.
var EventualFaults = []string{FaultPartitionMinority, FaultIsolateLeader, FaultIsolateFollower, FaultSplit, FaultOneWay,
	FaultLatency, FaultRestart, FaultKill, FaultPause, FaultClockSkew, FaultLearner}

// EventualConfig is one eventual run. Of the embedded Config, Name,
// Workload (Clients, Keys per keyspace, Rate, Prefix, Seed, Timeout),
// Faults, Steps, Duration, Passes, Mixed, Gap, Hold, OutDir and Logf mean
// what they mean for Run, and Mirror names one of Keyspaces (whose Backup
// is its bucket's URL); CheckTimeout is unused. The workload's Prefix
// goes between a keyspace's prefix and the key: "ev/" + "r1/" + "k3".
type EventualConfig struct {
	Config
	// Keyspaces are the policies written to (default
	// DefaultEventualKeyspaces).
	Keyspaces []EventualKeyspace
	// Final are fault kinds injected after the nemesis is done and held
	// while the clients keep writing; the clients stop before they are
	// healed, so that what the replicas miss then can only reach them
	// through hints, read repair and anti-entropy, not newer writes
	// (default: a minority partition; "none" for nothing).
	Final []string
	// FinalTail is how long Final stays after the clients stopped, before
	// it is healed (default none): with a bucket outage, the time the
	// mirrors have to try, and fail, to copy the last writes.
	FinalTail time.Duration
	// TTL, when set, is the ttl of one put in five.
	TTL time.Duration
	// AntiEntropy is the nodes' --anti-entropy-interval: after the faults,
	// the replicas have three of them, plus Margin (default 2 s), to
	// converge.
	AntiEntropy time.Duration
	Margin      time.Duration
	// MaxClockOffset is the nodes' --max-clock-offset (default 500 ms): the
	// clock-skew faults scale with it, and with half a second more it is the
	// clock slack of the expiry checks.
	MaxClockOffset time.Duration
	// Materialize, when set, checks each node's materialized directory of
	// one of Keyspaces against the converged end state (see
	// checkMaterialized).
	Materialize *MaterializeCheck
	// ExpectDivergence marks a run on a cluster built not to converge
	// (CheckerCatchesDivergence): it stops polling at the deadline without
	// logging every poll.
	ExpectDivergence bool
}

// EventualResult is what an eventual run found.
type EventualResult struct {
	Config  EventualConfig
	Cluster string
	Took    time.Duration
	Writes  []model.Write
	Reads   []model.EventualRead
	// ReadErrors counts reads that failed (no effect).
	ReadErrors int
	Faults     []FaultRecord
	// Final is the end state as last read, Convergence its verdict, and
	// ConvergedAfter the time from the moment every node was back to the
	// first poll that passed (-1: none passed).
	Final          []model.KeyState
	Convergence    model.Convergence
	ConvergedAfter time.Duration
	Polls          int
	Waited         time.Duration // how long the polls went on
	Deadline       time.Duration // 3 anti-entropy intervals + margin
	ReadViolations []model.Violation
	// MaterializeFailures are the directories that did not match the end
	// state, MaterializedAfter how long the check took.
	MaterializeFailures []string
	MaterializedAfter   time.Duration
	Failures            []string
	Notes               []string
	HistoryPath         string
	Report              string

	// MirrorFailures are how the mirror bucket differed from the end
	// state, MirroredAfter how long the check took.
	MirrorFailures []string
	MirroredAfter  time.Duration
}

// OK reports whether every check passed.
func (r *EventualResult) OK() bool { return len(r.Failures) == 0 }

func (r *EventualResult) fail(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

// Keys are the keys of the run, keyspace by keyspace.
func (cfg EventualConfig) Keys() []string {
	var out []string
	for _, ks := range cfg.Keyspaces {
		for i := 0; i < cfg.Workload.Keys; i++ {
			out = append(out, ks.Prefix+cfg.Workload.Key(i))
		}
	}
	return out
}

func (cfg *EventualConfig) defaults(c Cluster) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.Hold <= 0 {
		cfg.Hold = 2 * time.Second
	}
	if cfg.Gap <= 0 {
		cfg.Gap = 800 * time.Millisecond
	}
	if cfg.OutDir == "" {
		cfg.OutDir = os.TempDir()
	}
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("eventual, %d nodes, seed %d", c.Size(), cfg.Seed)
	}
	if cfg.Keyspaces == nil {
		cfg.Keyspaces = DefaultEventualKeyspaces
	}
	if cfg.Final == nil {
		cfg.Final = []string{FaultPartitionMinority}
	} else if len(cfg.Final) == 1 && cfg.Final[0] == "none" {
		cfg.Final = nil
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 6
	}
	if cfg.Workload.Keys <= 0 {
		cfg.Workload.Keys = 6
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 4 * time.Second
	}
	if cfg.AntiEntropy <= 0 {
		cfg.AntiEntropy = 30 * time.Second // the nodes' default
	}
	if cfg.Margin <= 0 {
		cfg.Margin = 2 * time.Second
	}
	if cfg.MaxClockOffset <= 0 {
		cfg.MaxClockOffset = 500 * time.Millisecond
	}
}

// CreateKeyspaces makes sure every keyspace of ks exists on c with its
// policy: it creates the ones missing (PUT /v1/keyspaces/{prefix}) and
// leaves alone those an earlier run created, retrying for up to 20 s while
// the cluster has no leader. A cluster that refuses an eventual keyspace
// because it has no engine for one answers ErrNoEventualEngine.
func CreateKeyspaces(c Cluster, ks []EventualKeyspace) error {
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	for _, k := range ks {
		if err := createKeyspace(c, hc, k); err != nil {
			return err
		}
	}
	return nil
}

func createKeyspace(c Cluster, hc *http.Client, k EventualKeyspace) error {
	body, _ := json.Marshal(k.policy())
	path := "/v1/keyspaces/" + escapePath(k.Prefix)
	deadline := time.Now().Add(20 * time.Second)
	var last error
	for n := 0; time.Now().Before(deadline); n++ {
		live := c.Live()
		if len(live) == 0 {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		node := c.Node(live[n%len(live)])
		a := httpDo(hc, http.MethodGet, node.ClientURL+path, nil)
		if a.err == nil && a.status == http.StatusOK {
			var p struct {
				Mode        string `json:"mode"`
				WriteQuorum int    `json:"write_quorum"`
				Backup      string `json:"backup"`
			}
			if err := json.Unmarshal(a.body, &p); err == nil && p.Mode == "eventual" && p.WriteQuorum == k.WriteQuorum && p.Backup == k.Backup {
				return nil // an earlier run's
			}
			return fmt.Errorf("harness: keyspace %s exists with another policy: %s", k.Prefix, bytes.TrimSpace(a.body))
		}
		a = httpDo(hc, http.MethodPut, node.ClientURL+path, body)
		switch code, _ := a.errorCode(); {
		case a.err != nil:
			last = a.err
		case a.status == http.StatusOK:
			return nil
		case code == "unsupported_mode":
			return fmt.Errorf("%w: PUT %s on %s answered %d %s", ErrNoEventualEngine, path, node.Name, a.status, bytes.TrimSpace(a.body))
		case a.status == http.StatusServiceUnavailable:
			last = fmt.Errorf("PUT %s on %s: %d %s", path, node.Name, a.status, bytes.TrimSpace(a.body))
		default:
			return fmt.Errorf("harness: PUT %s %s on %s: %d %s", path, body, node.Name, a.status, bytes.TrimSpace(a.body))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("harness: keyspace %s not created in 20 s: %w", k.Prefix, last)
}

// escapePath escapes each segment of a key or prefix for a URL path,
// keeping its slashes.
func escapePath(s string) string {
	parts := strings.Split(s, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// httpDo sends one request and reads the whole answer.
func httpDo(hc *http.Client, method, u string, body []byte) answer {
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

// RunEventual drives cfg against c: it creates the keyspaces, runs the
// writers, readers and the nemesis, holds cfg.Final while the clients
// stop, restores every node and polls the replicas until they converge or
// the deadline passes. The cluster stays up (running, healed) for the next
// run.
func RunEventual(c Cluster, cfg EventualConfig) *EventualResult {
	cfg.defaults(c)
	res := &EventualResult{Config: cfg, Cluster: c.Describe(), ConvergedAfter: -1,
		Deadline: 3*cfg.AntiEntropy + cfg.Margin}
	started := time.Now()
	defer func() {
		res.Took = time.Since(started)
		res.Report = res.format()
	}()
	p, notes := schedule(c, cfg.Config)
	res.Notes = append(res.Notes, notes...)
	var final []string
	for _, k := range cfg.Final {
		if why := unsupported(c, cfg.Config, k); why != "" {
			res.Notes = append(res.Notes, fmt.Sprintf("final fault %s skipped on %s: %s", k, c.Describe(), why))
			continue
		}
		final = append(final, k)
	}
	if err := CreateKeyspaces(c, cfg.Keyspaces); err != nil {
		res.fail("%v", err)
		return res
	}

	rec := &recorder{start: time.Now()}
	hist := &evHistory{}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	waitClients := runEventualClients(ctx, c, cfg, rec, hist)
	nm := newNemesis(c, cfg.Config, rec)
	nm.clockBound = cfg.MaxClockOffset
	sleep(ctx, time.Second)
	nm.drive(ctx, p, cfg.Config)
	if len(final) > 0 {
		sleep(ctx, cfg.Gap)
		act, hold := nm.inject(final, cfg.Hold)
		sleep(ctx, hold)
		stop()
		waitClients()
		time.Sleep(cfg.FinalTail)
		nm.undo(act)
	} else {
		stop()
		waitClients()
	}
	if err := nm.restore(); err != nil {
		res.fail("restoring the cluster after the faults: %v", err)
	}
	res.Faults = nm.faults
	res.Writes, res.Reads, res.ReadErrors = hist.writes, hist.reads, hist.readErrors
	cfg.Logf("harness: %s: clients stopped after %s (%d writes, %d reads); waiting for every node",
		cfg.Name, time.Since(rec.start).Round(time.Second), len(res.Writes), len(res.Reads))
	for i := 0; i < c.Slots(); i++ {
		if c.Node(i).Member {
			if err := c.WaitReady(i, 30*time.Second); err != nil {
				res.fail("after healing: %v", err)
			}
		}
	}

	// Every node is back: the replicas have until the deadline.
	back := time.Now()
	fr := newFinalReader(c, rec)
	defer fr.hc.CloseIdleConnections()
	slack := cfg.MaxClockOffset + 500*time.Millisecond
	for {
		res.Final = fr.read(cfg.Keys())
		res.Convergence = model.CheckConvergence(res.Writes, res.Final, slack)
		res.Polls++
		res.Waited = time.Since(back)
		if res.Convergence.OK() {
			res.ConvergedAfter = res.Waited
			break
		}
		if res.Waited > res.Deadline {
			break
		}
		if !cfg.ExpectDivergence && res.Polls%8 == 1 {
			cfg.Logf("harness: %s: not converged after %s: %d violations, first %s", cfg.Name,
				res.Waited.Round(100*time.Millisecond), len(res.Convergence.Violations), res.Convergence.Violations[0])
		}
		time.Sleep(250 * time.Millisecond)
	}
	if !res.Convergence.OK() {
		res.fail("replicas did not converge within %s of every node being back (3 anti-entropy intervals of %s + %s): %d violations",
			res.Deadline, cfg.AntiEntropy, cfg.Margin, len(res.Convergence.Violations))
		for _, v := range res.Convergence.Violations {
			res.fail("convergence: %s", v)
		}
	}
	if cfg.Materialize != nil && res.Convergence.OK() {
		res.MaterializeFailures, res.MaterializedAfter = checkMaterialized(c, cfg.Materialize, res.Final)
		for _, f := range res.MaterializeFailures {
			res.fail("%s", f)
		}
	}
	if cfg.Mirror != nil && res.Convergence.OK() {
		res.MirrorFailures, res.MirroredAfter = checkMirror(cfg.Mirror, liveValues(res.Final, cfg.Mirror.Prefix), rec.start)
		for _, f := range res.MirrorFailures {
			res.fail("%s", f)
		}
	}
	res.ReadViolations = model.CheckEventualReads(res.Writes, res.Reads)
	for _, v := range res.ReadViolations {
		res.fail("read: %s", v)
	}
	notes, crashes := c.Drain()
	res.Notes = append(res.Notes, notes...)
	for _, e := range crashes {
		res.fail("node crashed: %s", e)
	}
	for _, a := range rec.anomalies {
		res.fail("API contract: %s", a)
	}
	for _, f := range res.Faults {
		if strings.HasPrefix(f.Err, "heal:") {
			res.fail("fault %s at +%.1fs could not be healed: %s", f.Kind, f.Start.Seconds(), f.Err)
		}
	}
	if n := res.Convergence.Outcomes[model.WriteAcked]; n < 30 {
		res.fail("only %d writes were acknowledged: the cluster made no progress", n)
	}
	res.HistoryPath = saveEventual(cfg, res)
	return res
}

// evHistory collects the writes and reads of an eventual run.
type evHistory struct {
	mu         sync.Mutex
	writes     []model.Write
	reads      []model.EventualRead
	readErrors int
}

// savedEventual is an eventual run as saved beside its report.
type savedEventual struct {
	Name   string               `json:"name"`
	Writes []model.Write        `json:"writes"`
	Reads  []model.EventualRead `json:"reads"`
	Final  []model.KeyState     `json:"final"`
	Faults []FaultRecord        `json:"faults"`
}

// saveEventual writes the run's writes, reads, end state and faults to
// OutDir as JSON, and returns the path ("" when it could not).
func saveEventual(cfg EventualConfig, res *EventualResult) string {
	name := runFileName("eventual-", cfg.Name, ".json")
	path := filepath.Join(cfg.OutDir, name)
	b, err := json.Marshal(savedEventual{Name: cfg.Name, Writes: res.Writes, Reads: res.Reads, Final: res.Final, Faults: res.Faults})
	if err != nil || os.WriteFile(path, b, 0o644) != nil {
		return ""
	}
	return path
}
