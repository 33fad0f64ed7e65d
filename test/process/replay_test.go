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
	nodes := make([]*node, 3)
	var spec []string
	for i := range nodes {
		n := &node{name: fmt.Sprintf("n%d", i+1), client: freePort(t), peer: freePort(t), resp: freePort(t), dir: t.TempDir()}
		nodes[i] = n
		spec = append(spec, n.name+"="+n.peer)
	}
	clusterSpec := strings.Join(spec, ",")
	defer func() {
		for _, n := range nodes {
			n.kill()
		}
	}()
	for _, n := range nodes {
		n.start(t, clusterSpec)
	}
	for _, n := range nodes {
		waitReady(t, n, 30*time.Second)
	}
	hc := &http.Client{Timeout: 3 * time.Second}
	defer hc.CloseIdleConnections()
	put := func(n *node, key, value string) int64 {
		req, _ := http.NewRequest(http.MethodPut, n.url()+"/v1/kv/"+key, strings.NewReader(value))
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
	leader := leaderName(t, nodes[0])
	var l, f *node
	for _, n := range nodes {
		switch {
		case n.name == leader:
			l = n
		case f == nil:
			f = n
		}
	}
	if l == nil {
		t.Fatalf("no leader (%q)", leader)
	}
	// Writes through the leader go on for the whole test.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			put(l, fmt.Sprintf("load/%04d", i%500), strconv.Itoa(i))
		}
	}()
	time.Sleep(time.Second)

	// kill -9 the follower and keep a copy of its state as it was.
	f.kill()
	state := filepath.Join(f.dir, "state")
	backup := filepath.Join(t.TempDir(), "state")
	if err := os.CopyFS(backup, os.DirFS(state)); err != nil {
		t.Fatal(err)
	}
	f.start(t, clusterSpec)
	waitReady(t, f, 30*time.Second)
	time.Sleep(2 * time.Second) // the follower applies a couple of thousand more entries
	mark := put(l, "mark", "m")
	if mark == 0 {
		t.Fatal("put mark failed")
	}
	// The follower serves mark, fresh.
	read := func() (rev int64, stale, ok bool) {
		resp, err := hc.Get(f.url() + "/v1/kv/mark?consistency=serializable")
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
			t.Fatalf("%s never served mark @%d", f.name, mark)
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := revision(t, hc, f)

	// kill -9 again, and bring the state back from the older copy.
	f.kill()
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(state, os.DirFS(backup)); err != nil {
		t.Fatal(err)
	}
	f.start(t, clusterSpec)
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
				t.Fatalf("%s served mark @%d (0: absent) marked fresh after a restart, but had served it @%d before", f.name, rev, mark)
			default:
				freshReads++
			}
		}
		resp, err := hc.Get(f.url() + "/readyz")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			continue
		}
		if r := revision(t, hc, f); r < before {
			t.Fatalf("%s is ready at revision %d, behind the revision %d it had before kill -9", f.name, r, before)
		}
		if readyAt.IsZero() {
			readyAt = time.Now()
		}
		if time.Since(readyAt) > time.Second {
			break
		}
	}
	if readyAt.IsZero() {
		t.Fatalf("%s not ready 30 s after its restart; log:\n%s", f.name, f.log.String())
	}
	if first < 0 || first >= before {
		t.Fatalf("the restarted state was not behind (revision %d at start, %d before): the test did not test anything", first, before)
	}
	t.Logf("%s restarted at revision %d, %d behind; ready once replayed; %d stale and %d fresh serializable reads during and after replay",
		f.name, first, before-first, staleReads, freshReads)
}

func statusRevision(hc *http.Client, n *node) (int64, error) {
	resp, err := hc.Get(n.url() + "/v1/cluster/status")
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

func revision(t *testing.T, hc *http.Client, n *node) int64 {
	t.Helper()
	r, err := statusRevision(hc, n)
	if err != nil {
		t.Fatalf("status of %s: %v", n.name, err)
	}
	return r
}
