package process

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/cairnkv/cairn/test/lincheck"
)

// TestLinearizableProcesses is the harness run on real processes: three
// faultinject builds of cairn, six HTTP clients (linearizable gets, puts,
// compare-and-swaps through /v1/txn) spread over all nodes, and a nemesis that
// partitions the leader or a follower (through /debug/faults), pauses a node
// with SIGSTOP for longer than the election timeout, kills one with kill -9 and
// restarts it, and slows the leader's links. Afterwards the faults are healed,
// every node must hold the same data at the same applied index, and porcupine
// checks the history.
func TestLinearizableProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nodes := make([]*node, 3)
	var spec []string
	for i := range nodes {
		n := &node{name: fmt.Sprintf("n%d", i+1), client: freePort(t), peer: freePort(t), resp: freePort(t), dir: t.TempDir(),
			bin: faultBinary, extra: []string{"--snapshot-entries", "200", "--trailing-logs", "50", "--snapshot-interval", "200ms"}}
		nodes[i] = n
		spec = append(spec, n.name+"="+n.peer)
	}
	clusterSpec := strings.Join(spec, ",")
	var procMu sync.Mutex
	defer func() {
		procMu.Lock()
		defer procMu.Unlock()
		for _, n := range nodes {
			if n.cmd != nil {
				_ = n.cmd.Process.Signal(syscall.SIGCONT)
			}
			n.kill()
		}
	}()
	for _, n := range nodes {
		n.start(t, clusterSpec)
	}
	for _, n := range nodes {
		waitReady(t, n, 30*time.Second)
	}

	hc := &http.Client{Timeout: 2 * time.Second}
	ctl := &http.Client{Timeout: 2 * time.Second}
	post := func(n *node, path string) {
		if resp, err := ctl.Post(n.url()+path, "", nil); err == nil {
			resp.Body.Close()
		}
	}
	partition := func(group ...int) {
		for i, a := range nodes {
			for j, b := range nodes {
				if containsIdx(group, i) != containsIdx(group, j) {
					post(a, "/debug/faults/block?addr="+b.peer)
				}
			}
		}
	}
	heal := func() {
		for _, n := range nodes {
			post(n, "/debug/faults/reset")
		}
	}
	leader := func() int {
		for i, n := range nodes {
			if name := leaderName(t, n); name != "" {
				for j, m := range nodes {
					if m.name == name {
						return j
					}
				}
				_ = i
			}
		}
		return -1
	}

	h := lincheck.NewHistory()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for cl := 0; cl < 6; cl++ {
		wg.Add(1)
		go func(cl int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(cl), 42))
			lastSeen := map[string]string{}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := nodes[rng.IntN(3)]
				key := fmt.Sprintf("lin/%d", rng.IntN(5))
				in := lincheck.Input{Key: key, Value: fmt.Sprintf("c%d-%d", cl, i)}
				call := h.Now()
				var out lincheck.Output
				var failed bool
				switch p := rng.IntN(100); {
				case p < 40:
					in.Op = "get"
					resp, err := hc.Get(n.url() + "/v1/kv/" + key)
					if err != nil {
						time.Sleep(100 * time.Millisecond)
						continue
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					switch resp.StatusCode {
					case 200:
						out.Value = string(b)
					case 404:
					default:
						continue // a failed read has no effect
					}
					lastSeen[key] = out.Value
				case p < 80:
					in.Op = "put"
					req, _ := http.NewRequest(http.MethodPut, n.url()+"/v1/kv/"+key, strings.NewReader(in.Value))
					resp, err := hc.Do(req)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					failed = err != nil || resp.StatusCode != 200
				default:
					in.Op, in.Expected = "cas", lastSeen[key]
					cmp := map[string]any{"key": key, "target": "exists", "op": "=", "exists": false}
					if in.Expected != "" {
						cmp = map[string]any{"key": key, "target": "value", "op": "=", "value": in.Expected}
					}
					body, _ := json.Marshal(map[string]any{"compare": []any{cmp}, "success": []any{map[string]any{"op": "put", "key": key, "value": in.Value}}})
					resp, err := hc.Post(n.url()+"/v1/txn", "application/json", bytes.NewReader(body))
					failed = err != nil
					if err == nil {
						var res struct{ Succeeded bool }
						failed = resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&res) != nil
						resp.Body.Close()
						out.OK = res.Succeeded
					}
				}
				out.Unknown = failed
				h.Add(cl, in, call, out)
				if failed {
					// Back off: every write with an unknown outcome stays open
					// until the end of the history and makes checking costlier.
					time.Sleep(100 * time.Millisecond)
				}
			}
		}(cl)
	}

	rng := rand.New(rand.NewPCG(7, 7))
	var injected []string
	start := time.Now()
	kinds := []string{"partition-leader", "sigstop", "kill", "partition-follower", "latency"}
	for i := 0; time.Since(start) < 15*time.Second; i++ {
		time.Sleep(800 * time.Millisecond)
		kind := kinds[i%len(kinds)]
		injected = append(injected, fmt.Sprintf("%s@%.1fs", kind, time.Since(start).Seconds()))
		l := leader()
		victim := rng.IntN(3)
		switch kind {
		case "partition-leader":
			if l >= 0 {
				partition(l)
			}
			time.Sleep(1500 * time.Millisecond)
			heal()
		case "partition-follower":
			if victim == l {
				victim = (victim + 1) % 3
			}
			partition(victim)
			time.Sleep(1500 * time.Millisecond)
			heal()
		case "sigstop": // longer than the election timeout
			procMu.Lock()
			_ = nodes[victim].cmd.Process.Signal(syscall.SIGSTOP)
			procMu.Unlock()
			time.Sleep(1500 * time.Millisecond)
			procMu.Lock()
			_ = nodes[victim].cmd.Process.Signal(syscall.SIGCONT)
			procMu.Unlock()
		case "kill":
			procMu.Lock()
			nodes[victim].kill()
			procMu.Unlock()
			time.Sleep(time.Second)
			procMu.Lock()
			nodes[victim].start(t, clusterSpec)
			procMu.Unlock()
		case "latency":
			if l >= 0 {
				for _, n := range nodes {
					post(nodes[l], "/debug/faults/delay?d=60ms&addr="+n.peer)
				}
			}
			time.Sleep(1500 * time.Millisecond)
			heal()
		}
	}
	close(stop)
	wg.Wait()
	heal()
	for _, n := range nodes {
		waitReady(t, n, 30*time.Second)
	}

	// Every node converges to the same data at the same applied index.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var states []string
		for _, n := range nodes {
			resp, err := hc.Get(n.url() + "/v1/kv/?list=true&consistency=serializable")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			states = append(states, string(b))
		}
		if states[0] == states[1] && states[1] == states[2] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas differ after healing:\n%s", strings.Join(states, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	res, path := h.Check(60 * time.Second)
	known, unknown := h.Counts()
	t.Logf("%d operations (%d unknown outcome); faults %v: %s", known+unknown, unknown, injected, res)
	if known < 100 {
		t.Fatalf("only %d operations completed", known)
	}
	if res != porcupine.Ok {
		t.Fatalf("history is %s; visualization: %s", res, path)
	}
}

func containsIdx(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
