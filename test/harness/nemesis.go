package harness

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
	// FaultIsolateFollower cuts one follower off from every other node.
	FaultIsolateFollower = "isolate-follower"
	// FaultSplit splits the cluster into a majority and a minority that holds the leader.
	FaultSplit = "split"
	// FaultOneWay drops the links in one direction only, between the leader
	// and a follower (each direction in turn).
	FaultOneWay = "one-way"
	// FaultLatency delays every peer link by 10-100 ms.
	FaultLatency = "latency"
	// FaultRestart stops a node cleanly (the leader in turn) and starts it
	// again on its data when healing.
	FaultRestart = "restart"
	// FaultKill crashes a node (kill -9; the leader in turn) and restarts it
	// on its data when healing.
	FaultKill = "kill"
	// FaultPause freezes a node (SIGSTOP) for longer than the election
	// timeout, then thaws it.
	FaultPause = "pause"
	// FaultMemberReadd removes a member (the leader in turn), wipes it and
	// adds it back as a new voter when healing.
	FaultMemberReadd = "member-readd"
	// FaultLearnerReadd removes a follower, wipes it, adds it back as a
	// non-voter when healing and promotes it once it has caught up.
	FaultLearnerReadd = "learner-readd"
	// FaultLearner adds a spare node as a non-voter, promotes it, and
	// removes it when healing.
	FaultLearner = "learner-promote"
	// FaultTransfer transfers leadership to a random follower.
	FaultTransfer = "transfer"
	// FaultSnapshot keeps a follower cut off until the leader has compacted
	// its log past it, so it must install a snapshot when it comes back.
	FaultSnapshot = "snapshot"
	// FaultDisconnect takes a node (the leader in turn) off the network
	// (docker network disconnect); clusters in Docker only.
	FaultDisconnect = "disconnect"
	// FaultClockSkew sets the eventual-engine clocks of one or two members
	// off by up to 0.6 times the nodes' max clock offset, ahead or behind,
	// with every clock of the cluster within that much of every other, and
	// sets them right when healing. Only the eventual engine reads the
	// skewed clock (its HLC stamps); Raft and expiry keep the machine's.
	FaultClockSkew = "clock-skew"
	// FaultClockBeyond sets one member's eventual-engine clock four times
	// the max clock offset ahead, and right again when healing: the other
	// replicas refuse the writes it stamps. Not part of any sweep; see
	// CheckClockBeyondBound.
	FaultClockBeyond = "clock-skew-beyond"
	// FaultBucketDown takes the run's mirror bucket down (Config.Mirror:
	// every request answered 503) for the step's hold, at least
	// bucketDownHold, and brings it back when healing. A run without a
	// mirror skips it.
	FaultBucketDown = "bucket-down"
)

// bucketDownHold is the shortest bucket outage: longer than one request's
// own retries in the nodes' S3 client (minio-go, 4 tries within about
// 1.5 s), so that the mirror sees writes refused, not slow.
const bucketDownHold = 3 * time.Second

// AllFaults lists every fault kind but disconnect (which only the Docker
// variant offers, see DockerFaults).
var AllFaults = []string{FaultPartitionMinority, FaultIsolateLeader, FaultIsolateFollower, FaultSplit, FaultOneWay,
	FaultLatency, FaultRestart, FaultKill, FaultPause, FaultMemberReadd, FaultLearnerReadd, FaultLearner,
	FaultTransfer, FaultSnapshot}

// DockerFaults are the kinds of the container variant: docker network
// disconnect, docker pause (as the pause fault) and docker kill (as the kill
// fault).
var DockerFaults = []string{FaultDisconnect, FaultPause, FaultKill}

// composable are the kinds a mixed step may inject two at a time.
var composable = []string{FaultPartitionMinority, FaultIsolateLeader, FaultIsolateFollower, FaultOneWay, FaultLatency,
	FaultRestart, FaultKill, FaultPause, FaultTransfer, FaultDisconnect, FaultClockSkew, FaultBucketDown}

// needs are the actions each fault kind takes from the cluster; kinds
// that take none need only the cluster API (membership, leadership).
var needs = map[string][]Action{
	FaultPartitionMinority: {ActLinks},
	FaultIsolateLeader:     {ActLinks},
	FaultIsolateFollower:   {ActLinks},
	FaultSplit:             {ActLinks},
	FaultOneWay:            {ActLinks},
	FaultLatency:           {ActLinks},
	FaultRestart:           {ActStop},
	FaultKill:              {ActKill},
	FaultPause:             {ActPause},
	FaultSnapshot:          {ActLinks, ActLog},
	FaultDisconnect:        {ActDisconnect},
	FaultClockSkew:         {ActClock},
	FaultClockBeyond:       {ActClock},
}

// Unsupported says why c cannot make fault kind, or "" when it can.
func Unsupported(c Cluster, kind string) string {
	for _, a := range needs[kind] {
		if why, ok := c.Can(a); !ok {
			return why
		}
	}
	if kind == FaultLearner && c.Slots() <= c.Size() {
		return "no spare node slot"
	}
	return ""
}

// unsupported is Unsupported for a run of cfg: the bucket-down fault
// needs the run's mirror too.
func unsupported(c Cluster, cfg Config, kind string) string {
	if kind == FaultBucketDown && cfg.Mirror == nil {
		return "the run has no mirror bucket (Config.Mirror)"
	}
	return Unsupported(c, kind)
}

// FaultRecord is one injected fault, with times since the start of the run.
type FaultRecord struct {
	Kind       string
	Start, End time.Duration
	Detail     string
	Err        string // the fault could not be injected or healed
	// Skews are, for a clock fault, the clock offsets it set, by node name.
	Skews map[string]time.Duration `json:",omitempty"`
}

// injectFunc injects a fault and returns how to heal it; heal returns a note
// on what happened while healing.
type injectFunc func(nm *nemesis) (heal func() (string, error), detail string, err error)

var faultKinds = map[string]injectFunc{
	FaultPartitionMinority: injectPartitionMinority,
	FaultIsolateLeader:     injectIsolateLeader,
	FaultIsolateFollower:   injectIsolateFollower,
	FaultSplit:             injectSplit,
	FaultOneWay:            injectOneWay,
	FaultLatency:           injectLatency,
	FaultRestart:           injectRestart,
	FaultKill:              injectKill,
	FaultPause:             injectPause,
	FaultMemberReadd:       injectMemberReadd,
	FaultLearnerReadd:      injectLearnerReadd,
	FaultLearner:           injectLearner,
	FaultTransfer:          injectTransfer,
	FaultSnapshot:          injectSnapshot,
	FaultDisconnect:        injectDisconnect,
	FaultClockSkew:         injectClockSkew,
	FaultClockBeyond:       injectClockBeyond,
	FaultBucketDown:        injectBucketDown,
}

// ValidFault reports whether kind is a fault kind.
func ValidFault(kind string) bool { _, ok := faultKinds[kind]; return ok }

type nemesis struct {
	c      Cluster
	rng    *rand.Rand
	rec    *recorder
	prefix string // for filler writes
	logf   func(string, ...any)
	mu     sync.Mutex
	faults []FaultRecord
	// turns counts the injections of each kind; first is whether the first
	// one aimed at the leader.
	turns map[string]int
	first map[string]bool
	// Filler writes acknowledged, and with an unknown outcome: the revision
	// accounting in Run needs them.
	fillAcked, fillUnknown atomic.Int64
	// clockBound is the nodes' --max-clock-offset; skews are the clock
	// offsets the clock faults have set and not yet undone, by slot.
	clockBound time.Duration
	skews      map[int]time.Duration
	// bucket is the run's mirror bucket (Config.Mirror), or nil.
	bucket *MirrorBucket
}

func (nm *nemesis) name(i int) string { return nm.c.Node(i).Name }

func (nm *nemesis) names(idx []int) string {
	var s []string
	for _, i := range idx {
		s = append(s, nm.name(i))
	}
	return strings.Join(s, " ")
}

// members are the slots of the bootstrap voters that are members now.
func (nm *nemesis) members() []int {
	var out []int
	for i := 0; i < nm.c.Size(); i++ {
		if nm.c.Node(i).Member {
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

// leaderTurn says whether this injection of kind aims at the leader (or, for
// one-way, cuts the leader's side): the first one at random, then in turn,
// so that any two injections of a kind cover both roles.
func (nm *nemesis) leaderTurn(kind string) bool {
	n := nm.turns[kind]
	nm.turns[kind]++
	if n == 0 {
		nm.first[kind] = nm.rng.IntN(2) == 0
	}
	return nm.first[kind] != (n%2 == 1)
}

// victim is the leader or a follower, in turn per kind.
func (nm *nemesis) victim(kind string) (int, error) {
	if nm.leaderTurn(kind) {
		if l := nm.c.Leader(); l >= 0 {
			return l, nil
		}
	}
	live := nm.c.Live()
	if len(live) == 0 {
		return -1, errors.New("no live node")
	}
	l := nm.c.Leader()
	if f, err := nm.follower(l); err == nil {
		return f, nil
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

func injectIsolateFollower(nm *nemesis) (func() (string, error), string, error) {
	l, err := nm.leader()
	if err != nil {
		return nil, "", err
	}
	f, err := nm.follower(l)
	if err != nil {
		return nil, "", err
	}
	return nm.heal, nm.partition([]int{f}) + " (follower isolated)", nil
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
	if !nm.leaderTurn(FaultOneWay) {
		from, to, what = f, l, "follower cannot reach leader"
	}
	nm.c.Block(from, to)
	return nm.heal, fmt.Sprintf("%s -> %s dropped (%s)", nm.name(from), nm.name(to), what), nil
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

func injectRestart(nm *nemesis) (func() (string, error), string, error) {
	return injectOnNode(nm, FaultRestart, ActStop, nm.c.Stop, nm.c.Start, "start")
}

func injectKill(nm *nemesis) (func() (string, error), string, error) {
	return injectOnNode(nm, FaultKill, ActKill, nm.c.Kill, nm.c.Start, "restart")
}

func injectPause(nm *nemesis) (func() (string, error), string, error) {
	return injectOnNode(nm, FaultPause, ActPause, nm.c.Pause, nm.c.Resume, "resume")
}

func injectDisconnect(nm *nemesis) (func() (string, error), string, error) {
	return injectOnNode(nm, FaultDisconnect, ActDisconnect, nm.c.Disconnect, nm.c.Reconnect, "connect")
}

// injectOnNode does one thing to one victim node (stop, kill, pause,
// disconnect) and returns what undoes it when healing. The undo is returned
// even when the fault failed midway: every undo does nothing to a node it
// finds as it should be (Start on a running node, Resume on one not paused,
// Reconnect on one connected).
func injectOnNode(nm *nemesis, kind string, act Action, do, undo func(int) error, undoing string) (func() (string, error), string, error) {
	v, err := nm.victim(kind)
	if err != nil {
		return nil, "", err
	}
	what := roleOf(nm, v)
	how, _ := nm.c.Can(act)
	heal := func() (string, error) { return "", undo(v) }
	if err := do(v); err != nil {
		return heal, "", err
	}
	return heal, fmt.Sprintf("%s %s (%s), %s when healing", how, nm.name(v), what, undoing), nil
}

func roleOf(nm *nemesis, i int) string {
	if s, err := nm.c.Status(i); err == nil {
		return s.State
	}
	return "?"
}

// skew sets the clocks of the nodes in skews (slot -> offset) and returns
// what sets them right again. The offsets stay in nm.skews until then, so
// that restore can undo what a heal could not.
func (nm *nemesis) skew(skews map[int]time.Duration) (func() (string, error), string, error) {
	var parts []string
	heal := func() (string, error) {
		var errs []error
		for i := range skews {
			if err := nm.c.SkewClock(i, 0); err != nil {
				errs = append(errs, err)
				continue
			}
			delete(nm.skews, i)
		}
		return "", errors.Join(errs...)
	}
	slots := slices.Sorted(maps.Keys(skews))
	for _, i := range slots {
		d := skews[i]
		nm.skews[i] = d
		if err := nm.c.SkewClock(i, d); err != nil {
			return heal, "", err
		}
		parts = append(parts, nm.name(i)+" "+signed(d))
	}
	return heal, strings.Join(parts, ", "), nil
}

// signed is d with its sign: "+300ms", "-120ms".
func signed(d time.Duration) string {
	if d >= 0 {
		return "+" + d.String()
	}
	return d.String()
}

// injectClockSkew skews one or two live members within the bound: the
// first by a half to the whole of 0.6 times the max offset, ahead or
// behind; the second so that no two clocks (the unskewed ones at 0
// included) are more than that apart.
func injectClockSkew(nm *nemesis) (func() (string, error), string, error) {
	live := nm.c.Live()
	if len(live) == 0 {
		return nil, "", errors.New("no live node")
	}
	bound := nm.clockBound * 6 / 10
	ms := func(lo, hi time.Duration) time.Duration { // uniform in [lo, hi], whole milliseconds
		return (lo + time.Duration(nm.rng.Int64N(int64(hi-lo)+1))).Round(time.Millisecond)
	}
	nm.rng.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
	s1 := ms(bound/2, bound)
	if nm.rng.IntN(2) == 0 {
		s1 = -s1
	}
	skews := map[int]time.Duration{live[0]: s1}
	if len(live) > 1 && nm.rng.IntN(2) == 0 {
		if s1 > 0 {
			skews[live[1]] = ms(s1-bound, bound)
		} else {
			skews[live[1]] = ms(-bound, s1+bound)
		}
	}
	heal, detail, err := nm.skew(skews)
	return heal, fmt.Sprintf("%s (within 0.6 x the %s max offset), set right when healing", detail, nm.clockBound), err
}

// injectClockBeyond sets one live member's clock four max offsets ahead.
func injectClockBeyond(nm *nemesis) (func() (string, error), string, error) {
	live := nm.c.Live()
	if len(live) == 0 {
		return nil, "", errors.New("no live node")
	}
	v := live[nm.rng.IntN(len(live))]
	heal, detail, err := nm.skew(map[int]time.Duration{v: 4 * nm.clockBound})
	return heal, fmt.Sprintf("%s (4 x the %s max offset: its stamps are refused), set right when healing", detail, nm.clockBound), err
}

func injectMemberReadd(nm *nemesis) (func() (string, error), string, error) {
	v, err := nm.victim(FaultMemberReadd)
	if err != nil {
		return nil, "", err
	}
	return readd(nm, v, false)
}

func injectLearnerReadd(nm *nemesis) (func() (string, error), string, error) {
	l, err := nm.leader()
	if err != nil {
		return nil, "", err
	}
	f, err := nm.follower(l)
	if err != nil {
		return nil, "", err
	}
	return readd(nm, f, true)
}

// readd removes member v and wipes it; healing adds it back (as a learner
// that is then promoted, when learner is set).
func readd(nm *nemesis, v int, learner bool) (func() (string, error), string, error) {
	what := roleOf(nm, v)
	note, err := nm.c.RemoveMember(v)
	if err != nil {
		return nil, "", err
	}
	name := nm.name(v)
	detail := fmt.Sprintf("remove %s (%s), wipe it, add it back as a new member when healing", name, what)
	if learner {
		detail = fmt.Sprintf("remove %s (%s), wipe it, add it back as a non-voter when healing and promote it", name, what)
	}
	if note != "" {
		detail += " [" + note + "]"
	}
	return func() (string, error) {
		if err := nm.c.JoinMember(v, learner, 30*time.Second); err != nil {
			return "", err
		}
		if !learner {
			return name + " re-added", nil
		}
		if err := nm.c.Promote(v); err != nil {
			return "", err
		}
		return name + " re-added as a non-voter and promoted", nil
	}, detail, nil
}

func injectLearner(nm *nemesis) (func() (string, error), string, error) {
	s := nm.c.Size()
	if s >= nm.c.Slots() {
		return nil, "", errors.New("no spare node slot")
	}
	name := nm.name(s)
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
		fmt.Sprintf("%s -> %s (new leader: %q)", nm.name(l), nm.name(f), got), nil
}

// snapshotLag is how far the leader's log must run past a cut-off follower:
// beyond the snapshot interval in entries plus the trailing log of the
// clusters the harness starts (200 + 50 for processes, 256 + 64 in process),
// with room to spare.
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
	fn := nm.name(f)
	mark := nm.c.LogMark(f)
	desc := nm.partition([]int{f})
	// Write until the leader is far past the follower, then give the leader
	// time to take a snapshot and compact its log.
	written, err := nm.fill(f, st.AppliedIndex+snapshotLag, 30*time.Second)
	time.Sleep(2500 * time.Millisecond)
	desc = fmt.Sprintf("%s; %d filler writes while %s was away (applied %d)", desc, written, fn, st.AppliedIndex)
	if err != nil {
		return nm.heal, desc, err
	}
	return func() (string, error) {
		nm.c.Heal()
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if nm.c.LogContains(f, mark, "Installed remote snapshot") {
				return fn + " installed a snapshot", nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return fn + " did not install a snapshot within 15 s of healing", nil
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
				req, _ := http.NewRequest(http.MethodPut, nm.c.Node(i).ClientURL+keyPath(key), strings.NewReader("x"))
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

// restore undoes whatever faults are left: links healed, clocks set right,
// every member thawed, on the network and running.
func (nm *nemesis) restore() error {
	var errs []error
	_, disconnect := nm.c.Can(ActDisconnect)
	_, links := nm.c.Can(ActLinks)
	_, pause := nm.c.Can(ActPause)
	for i := 0; i < nm.c.Slots(); i++ {
		if disconnect {
			if err := nm.c.Reconnect(i); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if links {
		nm.c.Heal()
	}
	if nm.bucket != nil {
		nm.bucket.Up()
	}
	for i := range nm.skews {
		if err := nm.c.SkewClock(i, 0); err != nil {
			errs = append(errs, err)
		}
		delete(nm.skews, i)
	}
	for i := 0; i < nm.c.Slots(); i++ {
		n := nm.c.Node(i)
		if !n.Member {
			continue
		}
		if pause {
			if err := nm.c.Resume(i); err != nil {
				errs = append(errs, err)
			}
		}
		if !n.Running {
			if err := nm.c.Start(i); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// newNemesis makes the nemesis of a run of cfg on c; fault times are on
// rec's clock.
func newNemesis(c Cluster, cfg Config, rec *recorder) *nemesis {
	var bucket *MirrorBucket
	if cfg.Mirror != nil {
		bucket = cfg.Mirror.Bucket
	}
	return &nemesis{bucket: bucket, c: c, rng: rand.New(rand.NewPCG(cfg.Seed, 0x6e656d)), rec: rec, prefix: cfg.Prefix, logf: cfg.Logf,
		turns: map[string]int{}, first: map[string]bool{}, clockBound: 500 * time.Millisecond, skews: map[int]time.Duration{}}
}

// drive takes the steps of p (see schedule), or with no plan waits for
// cfg.Duration, until ctx is done.
func (nm *nemesis) drive(ctx context.Context, p *plan, cfg Config) {
	if p == nil {
		sleep(ctx, cfg.Duration)
		return
	}
	var duration time.Duration // a plan of passes or fixed steps runs to its end
	if p.repeat {
		duration = cfg.Duration
	}
	nm.run(ctx, p, duration, cfg.Gap, cfg.Hold)
}

// active is an injected fault and how to heal it.
type active struct {
	rec  int // index in nm.faults
	heal func() (string, error)
}

// step injects the given kinds together, holds them, and heals them in
// reverse order, recording each.
func (nm *nemesis) step(ctx context.Context, kinds []string, hold time.Duration) {
	act, hold := nm.inject(kinds, hold)
	sleep(ctx, hold)
	nm.undo(act)
}

// inject injects the given kinds together and records each; it returns
// what heals them and how long they must at least be held (hold, or longer
// for a pause).
func (nm *nemesis) inject(kinds []string, hold time.Duration) ([]active, time.Duration) {
	var act []active
	for _, k := range kinds {
		at := time.Duration(nm.rec.now())
		var heal func() (string, error)
		var detail string
		var err error
		if why := Unsupported(nm.c, k); why != "" {
			err = fmt.Errorf("skipped on %s: %s", nm.c.Describe(), why)
		} else {
			heal, detail, err = faultKinds[k](nm)
		}
		r := FaultRecord{Kind: k, Start: at, Detail: detail}
		if (k == FaultClockSkew || k == FaultClockBeyond) && err == nil {
			r.Skews = map[string]time.Duration{}
			for i, d := range nm.skews {
				r.Skews[nm.name(i)] = d
			}
		}
		if err != nil {
			r.Err = "not injected: " + err.Error()
			r.End = time.Duration(nm.rec.now())
		}
		nm.mu.Lock()
		nm.faults = append(nm.faults, r)
		idx := len(nm.faults) - 1
		nm.mu.Unlock()
		nm.logf("harness: +%.1fs %s: %s %s", at.Seconds(), k, detail, r.Err)
		if heal != nil {
			act = append(act, active{idx, heal})
		}
		switch k {
		case FaultPause:
			// A pause must outlast the election timeout (500 ms for processes).
			hold = max(hold, 1500*time.Millisecond)
		case FaultBucketDown:
			hold = max(hold, bucketDownHold)
		}
	}
	return act, hold
}

// undo heals injected faults in reverse order, recording each.
func (nm *nemesis) undo(act []active) {
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
		nm.logf("harness: +%.1fs healed %s %s %v", r.End.Seconds(), r.Kind, note, err)
	}
}

// plan is the nemesis's schedule: the steps it takes, one after another. A
// plan with only a queue takes exactly those steps.
type plan struct {
	kinds  []string
	mix    []string // the composable kinds among kinds
	passes int
	mixed  int
	repeat bool // a run with a duration: passes until the time is up

	queue    [][]string
	pass     int
	sinceMix int // single steps since the last mixed one
}

// next returns the next step, or nil when a run without a duration is done.
// Each pass injects every kind once, in a seeded order. Without a duration,
// passes passes are followed by mixed steps of two composable kinds at
// once; with one, a mixed step (when mixed > 0) follows every two single
// steps.
func (p *plan) next(rng *rand.Rand) []string {
	canMix := p.mixed > 0 && len(p.mix) >= 2
	pair := func() []string {
		a := p.mix[rng.IntN(len(p.mix))]
		b := p.mix[rng.IntN(len(p.mix))]
		for b == a {
			b = p.mix[rng.IntN(len(p.mix))]
		}
		return []string{a, b}
	}
	if p.repeat && canMix && p.sinceMix == 2 {
		p.sinceMix = 0
		return pair()
	}
	if len(p.queue) == 0 && (p.repeat || p.pass < p.passes) {
		order := slices.Clone(p.kinds)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, k := range order {
			p.queue = append(p.queue, []string{k})
		}
		p.pass++
		if !p.repeat && p.pass == p.passes && canMix {
			for m := 0; m < p.mixed; m++ {
				p.queue = append(p.queue, pair())
			}
		}
	}
	if len(p.queue) == 0 {
		return nil
	}
	step := p.queue[0]
	p.queue = p.queue[1:]
	p.sinceMix++
	return step
}

// run takes the steps of p until ctx is done, p is done, or (with a
// duration) the time is up; gap is the shortest wait between steps and hold
// the shortest time a step lasts (each up to 2.5 and 2 times longer).
func (nm *nemesis) run(ctx context.Context, p *plan, duration, gap, hold time.Duration) {
	deadline := time.Now().Add(duration)
	for ctx.Err() == nil {
		if duration > 0 && time.Now().After(deadline) {
			return
		}
		step := p.next(nm.rng)
		if step == nil {
			return
		}
		sleep(ctx, gap+time.Duration(nm.rng.Int64N(int64(gap)*3/2)))
		if ctx.Err() != nil {
			return
		}
		nm.step(ctx, step, hold+time.Duration(nm.rng.Int64N(int64(hold))))
	}
}

// injectBucketDown takes the mirror bucket down; healing brings it back
// and says how many requests it refused meanwhile.
func injectBucketDown(nm *nemesis) (func() (string, error), string, error) {
	b := nm.bucket
	if b == nil {
		return nil, "", errors.New("the run has no mirror bucket")
	}
	before := b.Refused()
	b.Down()
	return func() (string, error) {
		b.Up()
		return fmt.Sprintf("%d requests refused", b.Refused()-before), nil
	}, b.name + " answers 503 to every request, up again when healing", nil
}
