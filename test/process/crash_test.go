package process

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCrashDurability writes continuously while kill -9 takes down the leader
// and followers in turn; afterwards every acknowledged write must be on every
// node, exactly once, and revisions must never have gone backwards.
func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nodes := make([]*node, 3)
	var spec []string
	for i := range nodes {
		n := &node{name: fmt.Sprintf("n%d", i+1), client: freePort(t), peer: freePort(t), resp: freePort(t), dir: t.TempDir()}
		nodes[i] = n
		spec = append(spec, n.name+"="+n.peer)
	}
	cluster := strings.Join(spec, ",")
	var procMu sync.Mutex
	defer func() {
		procMu.Lock()
		defer procMu.Unlock()
		for _, n := range nodes {
			n.kill()
		}
	}()
	for _, n := range nodes {
		n.start(t, cluster)
	}
	for _, n := range nodes {
		waitReady(t, n, 30*time.Second)
	}

	hc := &http.Client{Timeout: 3 * time.Second}
	type ack struct {
		key string
		rev int64
	}
	var mu sync.Mutex
	var acked []ack
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			var lastRev int64
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("crash/w%d/%06d", w, i)
				n := nodes[rng.IntN(3)]
				req, _ := http.NewRequest(http.MethodPut, n.url()+"/v1/kv/"+key, strings.NewReader(key))
				resp, err := hc.Do(req)
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				var out struct{ Revision int64 }
				if err := json.Unmarshal(body, &out); err != nil {
					t.Errorf("bad answer %q", body)
					return
				}
				if out.Revision <= lastRev {
					t.Errorf("revision went backwards for writer %d: %d after %d", w, out.Revision, lastRev)
				}
				lastRev = out.Revision
				mu.Lock()
				acked = append(acked, ack{key, out.Revision})
				mu.Unlock()
			}
		}(w)
	}
	// kill -9 the leader, then a follower, then the leader..., restarting each.
	for round := 0; round < 6; round++ {
		time.Sleep(1500 * time.Millisecond)
		victim := -1
		if round%2 == 0 {
			name := leaderName(t, nodes[(round/2)%3])
			for i, n := range nodes {
				if n.name == name {
					victim = i
				}
			}
		}
		if victim < 0 {
			victim = round % 3
		}
		procMu.Lock()
		nodes[victim].kill()
		procMu.Unlock()
		time.Sleep(700 * time.Millisecond)
		procMu.Lock()
		nodes[victim].start(t, cluster)
		procMu.Unlock()
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	for _, n := range nodes {
		waitReady(t, n, 30*time.Second)
	}
	if len(acked) < 100 {
		t.Fatalf("only %d writes acknowledged", len(acked))
	}
	// Every node has every acknowledged write, once (version 1), after it has
	// caught up with the leader (a linearizable list on each node).
	for _, n := range nodes {
		resp, err := hc.Get(n.url() + "/v1/kv/crash/?list=true")
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Revision int64
			Items    []struct {
				Key         string
				Value       []byte
				ModRevision int64 `json:"mod_revision"`
				Version     int64
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		have := map[string]int64{}
		for _, it := range list.Items {
			if it.Version != 1 || string(it.Value) != it.Key {
				t.Fatalf("%s: %s has version %d, value %q", n.name, it.Key, it.Version, it.Value)
			}
			have[it.Key] = it.ModRevision
		}
		for _, a := range acked {
			rev, ok := have[a.key]
			if !ok {
				t.Fatalf("%s lost acknowledged write %s (revision %d)", n.name, a.key, a.rev)
			}
			if rev != a.rev {
				t.Fatalf("%s: %s at revision %d, acknowledged at %d", n.name, a.key, rev, a.rev)
			}
		}
	}
	t.Logf("%d acknowledged writes survived 6 kill -9 rounds on every node", len(acked))
}
