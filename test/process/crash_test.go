package process

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// crashWriter is one writer of TestCrashDurability.
type crashWriter struct {
	id      int
	c       *Cluster
	hc      *http.Client
	rng     *rand.Rand
	acked   map[string]int64 // unique key -> revision
	unknown map[string]bool  // unique keys whose put has an unknown outcome
	// The counter key gets plain puts of 1, 2, 3…: with nothing applied
	// twice, its version is the number of puts that took effect.
	counterAcked   int // puts acknowledged
	counterUnknown int // puts with an unknown outcome
	lastAckedValue int
	lastRev        int64
	errs           []string
}

func (w *crashWriter) put(key, value string) (rev int64, ok, sent bool) {
	targets := w.c.Targets()
	if len(targets) == 0 {
		return 0, false, false
	}
	n := w.c.Nodes[targets[w.rng.IntN(len(targets))]]
	req, _ := http.NewRequest(http.MethodPut, n.URL()+"/v1/kv/"+url.PathEscape(key), strings.NewReader(value))
	resp, err := w.hc.Do(req)
	if err != nil {
		var oe *net.OpError
		return 0, false, !(errors.As(err, &oe) && oe.Op == "dial") // a refused dial was never sent
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 == 4 {
		w.errs = append(w.errs, fmt.Sprintf("put %s on %s: %d %s", key, n.Name, resp.StatusCode, body))
		return 0, false, false
	}
	if resp.StatusCode != http.StatusOK {
		return 0, false, true
	}
	var out struct{ Revision int64 }
	if err := json.Unmarshal(body, &out); err != nil || out.Revision <= 0 {
		w.errs = append(w.errs, fmt.Sprintf("put %s: bad answer %q", key, body))
		return 0, false, true
	}
	if out.Revision <= w.lastRev {
		w.errs = append(w.errs, fmt.Sprintf("writer %d: revision went backwards: %d after %d", w.id, out.Revision, w.lastRev))
	}
	w.lastRev = out.Revision
	return out.Revision, true, true
}

func (w *crashWriter) run(ctx context.Context) {
	counter := 0
	for i := 0; ctx.Err() == nil; i++ {
		if i%4 == 3 {
			counter++
			_, ok, sent := w.put(fmt.Sprintf("crash/w%d/counter", w.id), strconv.Itoa(counter))
			switch {
			case ok:
				w.counterAcked++
				w.lastAckedValue = counter
			case sent:
				w.counterUnknown++
			default:
				counter-- // never sent: the value can be used again
			}
		} else {
			key := fmt.Sprintf("crash/w%d/%06d", w.id, i)
			rev, ok, sent := w.put(key, key)
			switch {
			case ok:
				w.acked[key] = rev
			case sent:
				w.unknown[key] = true
			}
		}
		if w.rng.IntN(10) == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

var crashRounds = flag.Int("crash.rounds", 8, "kill -9 rounds of TestCrashDurability")

// TestCrashDurability writes without pause while kill -9 takes down the
// leader and the followers in turn, each restarted on its data. Afterwards
// every replica must hold every acknowledged write at the revision it was
// acknowledged with, nothing may have been applied twice (unique keys have
// version 1; each writer's counter key has exactly as many versions as puts
// that took effect), no client may have seen the revision go backwards, and
// no restarted node may report ready behind the revision it had applied
// before the kill.
func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := New(t, &builds, Options{Nodes: 3})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var writers []*crashWriter
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		w := &crashWriter{id: i, c: c, hc: &http.Client{Timeout: 3 * time.Second}, rng: rand.New(rand.NewPCG(uint64(i), 3)),
			acked: map[string]int64{}, unknown: map[string]bool{}}
		writers = append(writers, w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.hc.CloseIdleConnections()
			w.run(ctx)
		}()
	}

	rng := rand.New(rand.NewPCG(1, 9))
	var behind []string
	for round := 0; round < *crashRounds; round++ {
		time.Sleep(time.Duration(1000+rng.IntN(800)) * time.Millisecond)
		victim, what := -1, "follower"
		if round%2 == 0 {
			victim, what = c.Leader(), "leader"
		}
		if victim < 0 {
			victim = rng.IntN(3)
			if victim == c.Leader() {
				victim = (victim + 1) % 3
			}
		}
		var before int64
		if st, err := c.Status(victim); err == nil {
			before = st.Revision
		}
		if err := c.Kill(victim); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: kill -9 %s (%s) at revision %d", round+1, c.Nodes[victim].Name, what, before)
		time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond)
		if err := c.Start(victim); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitReady(victim, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		// The state database is written without fsync (the Raft log is the
		// durable copy), so a node may restart behind what it had applied;
		// it must not say it is ready before it has replayed that far.
		if st, err := c.Status(victim); err != nil {
			t.Errorf("status of %s after its restart: %v", c.Nodes[victim].Name, err)
		} else if st.Revision < before {
			behind = append(behind, fmt.Sprintf("%s was ready at revision %d, behind the revision %d it had applied before kill -9", c.Nodes[victim].Name, st.Revision, before))
		}
	}
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	for _, b := range behind {
		t.Error(b)
	}

	st, err := c.WaitConverged(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	acked, counted := 0, 0
	for _, w := range writers {
		for _, e := range w.errs {
			t.Error(e)
		}
		for key, rev := range w.acked {
			acked++
			it, ok := st.Items[key]
			switch {
			case !ok:
				t.Errorf("lost acknowledged write %s (@%d)", key, rev)
			case it.ModRevision != rev || string(it.Value) != key:
				t.Errorf("%s is %q @%d, acknowledged as %q @%d", key, it.Value, it.ModRevision, key, rev)
			case it.Version != 1:
				t.Errorf("%s has version %d: applied more than once", key, it.Version)
			}
		}
		for key := range w.unknown {
			if it, ok := st.Items[key]; ok && (it.Version != 1 || string(it.Value) != key) {
				t.Errorf("%s (unknown outcome) is %q version %d", key, it.Value, it.Version)
			}
		}
		key := fmt.Sprintf("crash/w%d/counter", w.id)
		it, ok := st.Items[key]
		if w.counterAcked > 0 && !ok {
			t.Errorf("%s lost (%d puts acknowledged)", key, w.counterAcked)
			continue
		}
		counted += w.counterAcked
		v, _ := strconv.Atoi(string(it.Value))
		if ok && (it.Version < int64(w.counterAcked) || it.Version > int64(w.counterAcked+w.counterUnknown)) {
			t.Errorf("%s has version %d after %d acknowledged and %d unknown puts: a put was lost or applied twice",
				key, it.Version, w.counterAcked, w.counterUnknown)
		}
		if ok && v < w.lastAckedValue {
			t.Errorf("%s is %d, below the last acknowledged %d", key, v, w.lastAckedValue)
		}
	}
	if acked < 200 {
		t.Errorf("only %d writes acknowledged: the cluster made little progress", acked)
	}
	t.Logf("%d unique writes and %d counter puts acknowledged across %d kill -9 rounds; replicas %v agree at applied index %d, revision %d",
		acked, counted, *crashRounds, st.Nodes, st.AppliedIndex, st.Revision)
}
