package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The fault kinds of the nemesis.
const (
	// FaultPartitionMinority cuts a random minority (leader or not) off from the rest.
	FaultPartitionMinority = "partition-minority"
	// FaultIsolateLeader cuts the leader off from every other node.
	FaultIsolateLeader = "isolate-leader"
	// FaultSplit splits the cluster into a majority and a minority that holds the leader.
	FaultSplit = "split"
	// FaultOneWay drops the links in one direction only, between the leader and a follower.
	FaultOneWay = "one-way"
	// FaultLatency delays every peer link by 10-100 ms.
	FaultLatency = "latency"
	// FaultKill kills a node with SIGKILL (the leader half the time) and restarts it.
	FaultKill = "kill"
	// FaultPause stops a node with SIGSTOP for longer than the election timeout, then SIGCONT.
	FaultPause = "pause"
	// FaultMemberReadd removes a member through the API, wipes it and adds it back with --join.
	FaultMemberReadd = "member-readd"
	// FaultLearner adds a spare node as a non-voter, promotes it, and removes it when healing.
	FaultLearner = "learner-promote"
	// FaultTransfer transfers leadership to a random follower.
	FaultTransfer = "transfer"
	// FaultSnapshot keeps a follower cut off until the leader has compacted
	// its log past it, so it must install a snapshot when it comes back.
	FaultSnapshot = "snapshot"
	// FaultDisconnect takes a node (the leader half the time) off the Docker
	// network with docker network disconnect; clusters in Docker only.
	FaultDisconnect = "disconnect"
)

// AllFaults lists every fault kind.
var AllFaults = []string{FaultPartitionMinority, FaultIsolateLeader, FaultSplit, FaultOneWay, FaultLatency,
	FaultKill, FaultPause, FaultMemberReadd, FaultLearner, FaultTransfer, FaultSnapshot}

// DockerFaults are the kinds of the container variant: docker network
// disconnect, docker pause (as the pause fault) and docker kill (as the kill
// fault).
var DockerFaults = []string{FaultDisconnect, FaultPause, FaultKill}

// composable are the kinds the mixed mode may inject two at a time.
var composable = []string{FaultPartitionMinority, FaultIsolateLeader, FaultOneWay, FaultLatency, FaultKill, FaultPause, FaultTransfer, FaultDisconnect}

// FaultRecord is one injected fault, with times since the start of the run.
type FaultRecord struct {
	Kind       string
	Start, End time.Duration
	Detail     string
	Err        string // the fault could not be injected or healed
}

// injectFunc injects a fault and returns how to heal it; heal returns a note
// on what happened while healing.
type injectFunc func(nm *nemesis) (heal func() (string, error), detail string, err error)

var faultKinds = map[string]injectFunc{
	FaultPartitionMinority: injectPartitionMinority,
	FaultIsolateLeader:     injectIsolateLeader,
	FaultSplit:             injectSplit,
	FaultOneWay:            injectOneWay,
	FaultLatency:           injectLatency,
	FaultKill:              injectKill,
	FaultPause:             injectPause,
	FaultMemberReadd:       injectMemberReadd,
	FaultLearner:           injectLearner,
	FaultTransfer:          injectTransfer,
	FaultSnapshot:          injectSnapshot,
	FaultDisconnect:        injectDisconnect,
}

// ValidFault reports whether kind is a fault kind.
func ValidFault(kind string) bool { _, ok := faultKinds[kind]; return ok }

type nemesis struct {
	c      *Cluster
	rng    *rand.Rand
	rec    *recorder
	prefix string // for filler writes
	logf   func(string, ...any)
	mu     sync.Mutex
	faults []FaultRecord
	// Filler writes acknowledged, and with an unknown outcome: the revision
	// accounting in Run needs them.
	fillAcked, fillUnknown atomic.Int64
}

func (nm *nemesis) names(idx []int) string {
	var s []string
	for _, i := range idx {
		s = append(s, nm.c.Nodes[i].Name)
	}
	return strings.Join(s, " ")
}

// members are the slots of the bootstrap voters that are members now.
func (nm *nemesis) members() []int {
	var out []int
	for i := 0; i < nm.c.Size(); i++ {
		if nm.c.Nodes[i].Member() {
			out = append(out, i)
		}
	}
	return out
}

func (nm *nemesis) leader() (int, error) {
	l, err := nm.c.WaitLeader(3 * time.Second)
	if err != nil {
		return -1, errors.New("no leader to aim at")
	}
	return l, nil
}

// follower picks a live member other than not.
func (nm *nemesis) follower(not int) (int, error) {
	var fs []int
	for _, i := range nm.c.Live() {
		if i != not {
			fs = append(fs, i)
		}
	}
	if len(fs) == 0 {
		return -1, errors.New("no follower to aim at")
	}
	return fs[nm.rng.IntN(len(fs))], nil
}

// victim is the leader half the time, otherwise any live member.
func (nm *nemesis) victim() (int, error) {
	if nm.rng.IntN(2) == 0 {
		if l := nm.c.Leader(); l >= 0 {
			return l, nil
		}
	}
	live := nm.c.Live()
	if len(live) == 0 {
		return -1, errors.New("no live node")
	}
	return live[nm.rng.IntN(len(live))], nil
}

func (nm *nemesis) heal() (string, error) { nm.c.Heal(); return "", nil }

func (nm *nemesis) partition(group []int) string {
	nm.c.Partition(group...)
	var rest []int
	for _, i := range nm.members() {
		if !slices.Contains(group, i) {
			rest = append(rest, i)
		}
	}
	return fmt.Sprintf("%s | %s", nm.names(group), nm.names(rest))
}

func injectPartitionMinority(nm *nemesis) (func() (string, error), string, error) {
	ms := nm.members()
	if len(ms) < 3 {
		return nil, "", fmt.Errorf("only %d members", len(ms))
	}
	nm.rng.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
	k := 1 + nm.rng.IntN((len(ms)-1)/2)
	return nm.heal, nm.partition(ms[:k]), nil
}

func injectIsolateLeader(nm *nemesis) (func() (string, error), string, error) {
	l, err := nm.leader()
	if err != nil {
		return nil, "", err
	}
	return nm.heal, nm.partition([]int{l}) + " (leader isolated)", nil
}

func injectSplit(nm *nemesis) (func() (string, error), string, error) {
	l, err := nm.leader()
	if err != nil {
		return nil, "", err
	}
	if len(nm.members()) < 3 {
		return nil, "", fmt.Errorf("only %d members", len(nm.members()))
	}
	group := []int{l}
	others := slices.DeleteFunc(nm.members(), func(i int) bool { return i == l })
	nm.rng.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
	group = append(group, others[:(len(nm.members())-1)/2-1]...)
	return nm.heal, nm.partition(group) + " (leader on the minority side)", nil
}

func injectOneWay(nm *nemesis) (func() (string, error), string, error) {
	l, err := nm.leader()
	if err != nil {
		return nil, "", err
	}
	f, err := nm.follower(l)
	if err != nil {
		return nil, "", err
	}
	from, to, what := l, f, "leader cannot reach follower"
	if nm.rng.IntN(2) == 0 {
		from, to, what = f, l, "follower cannot reach leader"
	}
	nm.c.Block(from, to)
	return nm.heal, fmt.Sprintf("%s -> %s dropped (%s)", nm.c.Nodes[from].Name, nm.c.Nodes[to].Name, what), nil
}

func injectLatency(nm *nemesis) (func() (string, error), string, error) {
	lo, hi := time.Duration(1<<62), time.Duration(0)
	for _, i := range nm.c.Live() {
		for _, j := range nm.c.Live() {
			if i != j {
				d := time.Duration(10+nm.rng.IntN(91)) * time.Millisecond
				lo, hi = min(lo, d), max(hi, d)
				nm.c.Delay(i, j, d)
			}
		}
	}
	return nm.heal, fmt.Sprintf("%s-%s on every link", lo, hi), nil
}

func injectKill(nm *nemesis) (func() (string, error), string, error) {
	v, err := nm.victim()
	if err != nil {
		return nil, "", err
	}
	what := roleOf(nm, v)
	nm.c.Kill(v)
	how := "kill -9"
	if nm.c.opts.Docker != nil {
		how = "docker kill"
	}
	return func() (string, error) { return "", nm.c.Start(v) }, fmt.Sprintf("%s %s (%s), restart when healing", how, nm.c.Nodes[v].Name, what), nil
}

func injectPause(nm *nemesis) (func() (string, error), string, error) {
	v, err := nm.victim()
	if err != nil {
		return nil, "", err
	}
	what := roleOf(nm, v)
	nm.c.Pause(v)
	stop, cont := "SIGSTOP", "SIGCONT"
	if nm.c.opts.Docker != nil {
		stop, cont = "docker pause", "docker unpause"
	}
	return func() (string, error) { nm.c.Resume(v); return "", nil },
		fmt.Sprintf("%s %s (%s), %s when healing", stop, nm.c.Nodes[v].Name, what, cont), nil
}

func injectDisconnect(nm *nemesis) (func() (string, error), string, error) {
	v, err := nm.victim()
	if err != nil {
		return nil, "", err
	}
	what := roleOf(nm, v)
	if err := nm.c.Disconnect(v); err != nil {
		return nil, "", err
	}
	return func() (string, error) { return "", nm.c.Reconnect(v) },
		fmt.Sprintf("docker network disconnect %s (%s), connect when healing", nm.c.Nodes[v].Name, what), nil
}

func roleOf(nm *nemesis, i int) string {
	if s, err := nm.c.Status(i); err == nil {
		return s.State
	}
	return "?"
}

func injectMemberReadd(nm *nemesis) (func() (string, error), string, error) {
	v, err := nm.victim()
	if err != nil {
		return nil, "", err
	}
	what := roleOf(nm, v)
	note, err := nm.c.RemoveMember(v)
	if err != nil {
		return nil, "", err
	}
	name := nm.c.Nodes[v].Name
	detail := fmt.Sprintf("remove %s (%s), wipe it, add it back with --join when healing", name, what)
	if note != "" {
		detail += " [" + note + "]"
	}
	return func() (string, error) {
		if err := nm.c.JoinMember(v, false, 30*time.Second); err != nil {
			return "", err
		}
		return name + " re-added", nil
	}, detail, nil
}

func injectLearner(nm *nemesis) (func() (string, error), string, error) {
	s := nm.c.Size()
	if s >= len(nm.c.Nodes) {
		return nil, "", errors.New("no spare node slot")
	}
	name := nm.c.Nodes[s].Name
	if err := nm.c.JoinMember(s, true, 30*time.Second); err != nil {
		return nil, "", err
	}
	if err := nm.c.Promote(s); err != nil {
		_, _ = nm.c.RemoveMember(s)
		return nil, "", err
	}
	return func() (string, error) {
			note, err := nm.c.RemoveMember(s)
			if err != nil {
				return "", err
			}
			if note != "" {
				return name + " removed [" + note + "]", nil
			}
			return name + " removed", nil
		},
		fmt.Sprintf("%s joined as a non-voter and was promoted; removed when healing", name), nil
}

func injectTransfer(nm *nemesis) (func() (string, error), string, error) {
	l, err := nm.leader()
	if err != nil {
		return nil, "", err
	}
	f, err := nm.follower(l)
	if err != nil {
		return nil, "", err
	}
	got, err := nm.c.TransferLeadership(f)
	if err != nil {
		return nil, "", err
	}
	return func() (string, error) { return "", nil },
		fmt.Sprintf("%s -> %s (new leader: %q)", nm.c.Nodes[l].Name, nm.c.Nodes[f].Name, got), nil
}

// snapshotLag is how far the leader's log must run past a cut-off follower:
// beyond --snapshot-entries 200 plus --trailing-logs 50, with room to spare.
const snapshotLag = 500

func injectSnapshot(nm *nemesis) (func() (string, error), string, error) {
	l, err := nm.leader()
	if err != nil {
		return nil, "", err
	}
	f, err := nm.follower(l)
	if err != nil {
		return nil, "", err
	}
	st, err := nm.c.Status(f)
	if err != nil {
		return nil, "", err
	}
	fn := nm.c.Nodes[f]
	offset := fn.LogSize()
	desc := nm.partition([]int{f})
	// Write until the leader is far past the follower, then give the leader
	// time to take a snapshot and compact its log.
	written, err := nm.fill(f, st.AppliedIndex+snapshotLag, 30*time.Second)
	time.Sleep(2500 * time.Millisecond)
	desc = fmt.Sprintf("%s; %d filler writes while %s was away (applied %d)", desc, written, fn.Name, st.AppliedIndex)
	if err != nil {
		return nm.heal, desc, err
	}
	return func() (string, error) {
		nm.c.Heal()
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if fn.LogContains(offset, "Installed remote snapshot") {
				return fn.Name + " installed a snapshot", nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return fn.Name + " did not install a snapshot within 15 s of healing", nil
	}, desc, nil
}

// fill writes filler keys through live nodes other than away until some
// live node reports an applied index of at least target. Requests in flight
// when it stops run to their end, so that each one's outcome is known.
func (nm *nemesis) fill(away int, target uint64, limit time.Duration) (int, error) {
	var written atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !stop.Load(); n++ {
				live := slices.DeleteFunc(nm.c.Live(), func(i int) bool { return i == away })
				if len(live) == 0 {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				i := live[(g+n)%len(live)]
				key := fmt.Sprintf("%sfill/%d-%d", nm.prefix, g, n%50)
				req, _ := http.NewRequest(http.MethodPut, nm.c.Nodes[i].URL()+keyPath(key), strings.NewReader("x"))
				resp, err := hc.Do(req)
				switch {
				case err != nil:
					if !(answer{err: err}).notSent() {
						nm.fillUnknown.Add(1)
					}
				case resp.StatusCode == http.StatusOK:
					written.Add(1)
					nm.fillAcked.Add(1)
				case resp.StatusCode/100 == 5:
					nm.fillUnknown.Add(1)
				}
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	defer wg.Wait()
	defer stop.Store(true)
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		for _, i := range nm.c.Live() {
			if i == away {
				continue
			}
			if st, err := nm.c.Status(i); err == nil && st.State == "leader" && st.AppliedIndex >= target {
				return int(written.Load()), nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return int(written.Load()), fmt.Errorf("the leader did not reach applied index %d in %s", target, limit)
}

// restore undoes whatever faults are left: links healed, every member
// resumed and running, no spare left in the configuration.
func (nm *nemesis) restore() error {
	var errs []error
	for i := range nm.c.Nodes {
		if err := nm.c.Reconnect(i); err != nil {
			errs = append(errs, err)
		}
	}
	nm.c.Heal()
	for i, n := range nm.c.Nodes {
		if !n.Member() {
			continue
		}
		nm.c.Resume(i)
		if !n.Running() {
			if err := nm.c.Start(i); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// step injects the given kinds together, holds them, and heals them in
// reverse order, recording each.
func (nm *nemesis) step(ctx context.Context, kinds []string, hold time.Duration) {
	type active struct {
		rec  int
		heal func() (string, error)
	}
	var act []active
	for _, k := range kinds {
		at := time.Duration(nm.rec.now())
		heal, detail, err := faultKinds[k](nm)
		r := FaultRecord{Kind: k, Start: at, Detail: detail}
		if err != nil {
			r.Err = "not injected: " + err.Error()
			r.End = time.Duration(nm.rec.now())
		}
		nm.mu.Lock()
		nm.faults = append(nm.faults, r)
		idx := len(nm.faults) - 1
		nm.mu.Unlock()
		nm.logf("chaos: +%.1fs %s: %s %s", at.Seconds(), k, detail, r.Err)
		if heal != nil {
			act = append(act, active{idx, heal})
		}
		if k == FaultPause {
			// SIGSTOP must outlast the election timeout (500 ms).
			hold = max(hold, 1500*time.Millisecond)
		}
	}
	sleep(ctx, hold)
	for k := len(act) - 1; k >= 0; k-- {
		note, err := act[k].heal()
		nm.mu.Lock()
		r := &nm.faults[act[k].rec]
		r.End = time.Duration(nm.rec.now())
		if note != "" {
			r.Detail += "; " + note
		}
		if err != nil {
			r.Err = "heal: " + err.Error()
		}
		nm.mu.Unlock()
		nm.logf("chaos: +%.1fs healed %s %s %v", r.End.Seconds(), r.Kind, note, err)
	}
}

// run injects faults until ctx is done or, with duration 0, until every
// kind had its turn (then mixed steps follow when asked for).
func (nm *nemesis) run(ctx context.Context, kinds []string, duration time.Duration, mixed int, hold time.Duration) {
	order := slices.Clone(kinds)
	nm.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	var mix []string
	for _, k := range kinds {
		if slices.Contains(composable, k) {
			mix = append(mix, k)
		}
	}
	deadline := time.Now().Add(duration)
	for n := 0; ctx.Err() == nil; n++ {
		if duration > 0 && time.Now().After(deadline) {
			return
		}
		if duration == 0 && n >= len(order)+mixed {
			return
		}
		sleep(ctx, time.Duration(800+nm.rng.IntN(1200))*time.Millisecond)
		if ctx.Err() != nil {
			return
		}
		step := []string{order[n%len(order)]}
		twoAtOnce := mixed > 0 && len(mix) >= 2 && (n >= len(order) || (duration > 0 && nm.rng.IntN(3) == 0))
		if twoAtOnce {
			a := mix[nm.rng.IntN(len(mix))]
			b := mix[nm.rng.IntN(len(mix))]
			for b == a {
				b = mix[nm.rng.IntN(len(mix))]
			}
			step = []string{a, b}
		}
		nm.step(ctx, step, hold+time.Duration(nm.rng.Int64N(int64(hold))))
	}
}
