package process

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRestartedNodeNotReadyUntilReplayed checks that a node whose state
// database came back from kill -9 behind its Raft log (the state is written
// without fsync; the log is the durable copy) neither reports ready nor
// serves serializable reads marked fresh until it has replayed the log at
// least to where it was before: neither may go back in time.
//
// The gap is made large and certain: the follower's state directory is
// replaced, while it is down, by a copy taken at an earlier kill -9, which is
// what a crash that lost many unsynced batches would leave.
func TestRestartedNodeNotReadyUntilReplayed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := New(t, &builds, Options{Binary: builds.Binary(t, false), Nodes: 3, Args: plainArgs})
	hc := &http.Client{Timeout: 3 * time.Second}
	defer hc.CloseIdleConnections()
	put := func(n *Node, key, value string) int64 {
		req, _ := http.NewRequest(http.MethodPut, n.URL()+"/v1/kv/"+key, strings.NewReader(value))
		resp, err := hc.Do(req)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		var out struct{ Revision int64 }
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
			return 0
		}
		return out.Revision
	}
	li, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	fi := (li + 1) % 3
	l, f := c.Nodes[li], c.Nodes[fi]
	// Writes through the leader go on for the whole test.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// Four writers, so the gap below is thousands of entries even on a
	// loaded machine, and replaying it takes longer than the restarted
	// node takes to answer its first status request.
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				put(l, fmt.Sprintf("load/%d/%04d", w, i%500), strconv.Itoa(i))
			}
		}()
	}
	time.Sleep(time.Second)

	// kill -9 the follower and keep a copy of its state as it was.
	if err := c.Kill(fi); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(f.DataDir, "state")
	backup := filepath.Join(t.TempDir(), "state")
	if err := os.CopyFS(backup, os.DirFS(state)); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(fi); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(fi, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// The follower applies thousands more entries than its copy holds.
	start, until := revision(t, hc, f), time.Now().Add(60*time.Second)
	for revision(t, hc, f) < start+3000 {
		if time.Now().After(until) {
			t.Fatalf("%s applied fewer than 3000 entries in 60 s", f.Name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mark := put(l, "mark", "m")
	if mark == 0 {
		t.Fatal("put mark failed")
	}
	// The follower serves mark, fresh.
	read := func() (rev int64, stale, ok bool) {
		resp, err := hc.Get(f.URL() + "/v1/kv/mark?consistency=serializable")
		if err != nil {
			return 0, false, false
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		stale = resp.Header.Get("X-Cairn-Stale") == "true"
		if resp.StatusCode == http.StatusNotFound {
			return 0, stale, true
		}
		rev, _ = strconv.ParseInt(resp.Header.Get("X-Cairn-Revision"), 10, 64)
		return rev, stale, resp.StatusCode == http.StatusOK
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if rev, stale, ok := read(); ok && !stale && rev == mark {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never served mark @%d", f.Name, mark)
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := revision(t, hc, f)

	// kill -9 again, and bring the state back from the older copy.
	if err := c.Kill(fi); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(state, os.DirFS(backup)); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(fi); err != nil {
		t.Fatal(err)
	}
	var first int64 = -1
	readyAt, freshReads, staleReads := time.Time{}, 0, 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if first < 0 {
			if r, err := statusRevision(hc, f); err == nil {
				first = r
			}
		}
		if rev, stale, ok := read(); ok {
			switch {
			case stale:
				staleReads++
			case rev < mark:
				t.Fatalf("%s served mark @%d (0: absent) marked fresh after a restart, but had served it @%d before", f.Name, rev, mark)
			default:
				freshReads++
			}
		}
		resp, err := hc.Get(f.URL() + "/readyz")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			continue
		}
		if r := revision(t, hc, f); r < before {
			t.Fatalf("%s is ready at revision %d, behind the revision %d it had before kill -9", f.Name, r, before)
		}
		if readyAt.IsZero() {
			readyAt = time.Now()
		}
		if time.Since(readyAt) > time.Second {
			break
		}
	}
	if readyAt.IsZero() {
		t.Fatalf("%s not ready 30 s after its restart; log %s", f.Name, f.LogPath)
	}
	if first < 0 || first >= before {
		t.Fatalf("the restarted state was not behind (revision %d at start, %d before): the test did not test anything", first, before)
	}
	t.Logf("%s restarted at revision %d, %d behind; ready once replayed; %d stale and %d fresh serializable reads during and after replay",
		f.Name, first, before-first, staleReads, freshReads)
}

func statusRevision(hc *http.Client, n *Node) (int64, error) {
	resp, err := hc.Get(n.URL() + "/v1/cluster/status")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status: %d", resp.StatusCode)
	}
	var st struct{ Revision int64 }
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, err
	}
	return st.Revision, nil
}

func revision(t *testing.T, hc *http.Client, n *Node) int64 {
	t.Helper()
	r, err := statusRevision(hc, n)
	if err != nil {
		t.Fatalf("status of %s: %v", n.Name, err)
	}
	return r
}
