package process

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	cairncli "github.com/cairnkv/cairn/internal/cli"
)

// TestRemovedMemberExitsProcess: `cairn members remove n3` makes the n3
// process log why and exit with cairncli.ExitRemoved well within 15 s; started
// again on its data it refuses with a message that says to wipe and
// --join, and wiped and joined it is a member again.
func TestRemovedMemberExitsProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := New(t, &builds, Options{Binary: builds.Binary(t, false), Nodes: 3, Args: plainArgs})
	url := func(i int) string { return c.Nodes[i].URL() }
	if _, code := cli(t, "", "--endpoints", url(0), "put", "ops/a", "1"); code != 0 {
		t.Fatalf("put exit %d", code)
	}
	n3 := c.Nodes[2]
	n3.mu.Lock()
	p := n3.proc
	n3.mu.Unlock()
	start := time.Now()
	if out, code := cli(t, "", "--endpoints", url(0), "members", "remove", "n3"); code != 0 {
		t.Fatalf("members remove n3: exit %d %s", code, out)
	}
	select {
	case <-p.exited():
	case <-time.After(15 * time.Second):
		t.Fatal("removed n3 still running 15 s after its removal")
	}
	var ee *exec.ExitError
	if !errors.As(p.exitErr(), &ee) || ee.ExitCode() != cairncli.ExitRemoved {
		t.Fatalf("removed n3 exited with %v, want exit code %d", p.exitErr(), cairncli.ExitRemoved)
	}
	t.Logf("n3 exited %s after its removal", time.Since(start).Round(time.Millisecond))
	log, _ := os.ReadFile(n3.LogPath)
	if !bytes.Contains(log, []byte("removed from the cluster: ")) || !bytes.Contains(log, []byte("; exiting")) {
		t.Fatalf("n3's log does not say it was removed and exits:\n%s", tail(log))
	}
	for i := range 2 {
		if err := c.WaitReady(i, 10*time.Second); err != nil {
			t.Fatalf("n%d after the removal: %v", i+1, err)
		}
	}

	mark := n3.LogSize()
	if err := c.Start(2); err == nil {
		t.Fatal("n3 started again on the data of a removed member")
	}
	log, _ = os.ReadFile(n3.LogPath)
	if msg := string(log[mark:]); !strings.Contains(msg, "wipe the data directory") || !strings.Contains(msg, "--join") {
		t.Fatalf("restarting removed n3: no clear message:\n%s", msg)
	}
	if err := c.JoinMember(2, false, 30*time.Second); err != nil {
		t.Fatalf("n3 wiped and joined again: %v", err)
	}
	if out, code := cli(t, "", "--endpoints", url(2), "get", "ops/a"); code != 0 || strings.TrimSpace(out) != "1" {
		t.Fatalf("get on the rejoined n3: %d %q", code, out)
	}
}

// TestForceNewCluster: after kill -9 of two of three members, the
// survivor restarted with --force-new-cluster leads a one-member cluster
// with its data, takes writes, and new members join it. The flag refuses
// an empty data directory and --join, and, once members have joined the
// forced node, a restart that would force it again.
func TestForceNewCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	var force atomic.Bool
	c := New(t, &builds, Options{Binary: builds.Binary(t, false), Nodes: 3, Args: plainArgs, NodeArgs: func(i int) []string {
		if i == 0 && force.Load() {
			return []string{"--force-new-cluster"}
		}
		return nil
	}})
	url := func(i int) string { return c.Nodes[i].URL() }
	for _, k := range []string{"a", "b", "c"} {
		if _, code := cli(t, "", "--endpoints", url(0)+","+url(1)+","+url(2), "put", "fnc/"+k, k); code != 0 {
			t.Fatalf("put %s: exit %d", k, code)
		}
	}
	// n1 must have every write before the others go: a write it lacks
	// would be lost, which is what the flag documents.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, code := cli(t, "", "--endpoints", url(0), "get", "--consistency", "serializable", "fnc/c")
		if code == 0 && strings.TrimSpace(out) == "c" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1 never applied fnc/c: %d %q", code, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, i := range []int{1, 2, 0} {
		if err := c.Kill(i); err != nil {
			t.Fatal(err)
		}
	}
	force.Store(true)
	if err := c.Start(0); err != nil {
		t.Fatalf("n1 --force-new-cluster: %v", err)
	}
	if err := c.WaitReady(0, 20*time.Second); err != nil {
		t.Fatalf("n1 after --force-new-cluster: %v", err)
	}
	// Still alone, a restart with the flag left on changes nothing.
	if err := c.Stop(0); err != nil {
		t.Fatal(err)
	}
	mark := c.LogMark(0)
	if err := c.Start(0); err != nil {
		t.Fatalf("n1 --force-new-cluster again, alone: %v", err)
	}
	force.Store(false)
	if err := c.WaitReady(0, 20*time.Second); err != nil {
		t.Fatalf("n1 after --force-new-cluster again: %v", err)
	}
	if !c.LogContains(0, mark, "changes nothing: remove the flag") {
		t.Error("a second forced start, alone, did not warn that the flag is still set")
	}
	if l := leaderName(t, url(0)); l != "n1" {
		t.Fatalf("leader after --force-new-cluster: %q, want n1", l)
	}
	for _, k := range []string{"a", "b", "c"} {
		if out, code := cli(t, "", "--endpoints", url(0), "get", "fnc/"+k); code != 0 || strings.TrimSpace(out) != k {
			t.Fatalf("get fnc/%s after recovery: %d %q", k, code, out)
		}
	}
	if _, code := cli(t, "", "--endpoints", url(0), "put", "fnc/after", "1"); code != 0 {
		t.Fatalf("put after recovery: exit %d", code)
	}
	out, code := cli(t, "", "--endpoints", url(0), "members", "list", "-o", "json")
	if code != 0 || strings.Count(out, `"name"`) != 1 {
		t.Fatalf("members after recovery: %d %s", code, out)
	}
	for _, i := range []int{1, 2} {
		if err := c.JoinMember(i, false, 30*time.Second); err != nil {
			t.Fatalf("n%d joins the recovered cluster: %v", i+1, err)
		}
	}
	if out, code := cli(t, "", "--endpoints", url(2), "get", "fnc/after"); code != 0 || strings.TrimSpace(out) != "1" {
		t.Fatalf("get on the joined n3: %d %q", code, out)
	}
	// n1 restarts without the flag as a member of the three.
	if err := c.Stop(0); err != nil {
		log, _ := os.ReadFile(c.Nodes[0].LogPath)
		t.Fatalf("%v:\n%s", err, tail(log))
	}
	if err := c.Start(0); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(0, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, code := cli(t, "", "--endpoints", url(1), "put", "fnc/three", "1"); code != 0 {
		t.Fatalf("put on the grown cluster: exit %d", code)
	}
	// The flag left on (a unit file not edited back) would drop the two
	// members that joined: refused, and n1 restarts as one of three.
	if err := c.Stop(0); err != nil {
		t.Fatal(err)
	}
	force.Store(true)
	args := c.serveArgs(c.Nodes[0])
	force.Store(false)
	{
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, builds.Binary(t, false), args...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		err := cmd.Run()
		cancel()
		var xe *exec.ExitError
		if !errors.As(err, &xe) || xe.ExitCode() != cairncli.ExitError || !strings.Contains(errb.String(), "members have joined since") ||
			!strings.Contains(errb.String(), "members now: n2, n3") {
			t.Fatalf("--force-new-cluster after members joined: %v, stderr %q; want exit %d refusing it", err, errb.String(), cairncli.ExitError)
		}
	}
	if err := c.Start(0); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(0, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	out, code = cli(t, "", "--endpoints", url(0), "members", "list", "-o", "json")
	if code != 0 || strings.Count(out, `"name"`) != 3 {
		t.Fatalf("members after the refused force: %d %s", code, out)
	}
	if _, code := cli(t, "", "--endpoints", url(0), "put", "fnc/kept", "1"); code != 0 {
		t.Fatalf("put after the refused force: exit %d", code)
	}

	bin := builds.Binary(t, false)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"empty data dir", []string{"--data-dir", t.TempDir()}, cairncli.ExitError, "needs this node's existing data directory"},
		{"with join", []string{"--data-dir", t.TempDir(), "--join", url(0)}, cairncli.ExitUsage, "cannot be combined with join"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, bin, append([]string{"serve", "--force-new-cluster", "--listen-client", "127.0.0.1:0",
			"--listen-peer", "127.0.0.1:0", "--listen-resp", "127.0.0.1:0"}, tc.args...)...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		err := cmd.Run()
		cancel()
		var xe *exec.ExitError
		if !errors.As(err, &xe) || xe.ExitCode() != tc.code || !strings.Contains(errb.String(), tc.want) {
			t.Fatalf("--force-new-cluster, %s: %v, stderr %q; want exit %d saying %q", tc.name, err, errb.String(), tc.code, tc.want)
		}
	}
}

// tail is the end of a log, for a failure message.
func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
