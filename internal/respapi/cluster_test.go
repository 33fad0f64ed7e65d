package respapi_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cairnkv/cairn/config"
	"github.com/cairnkv/cairn/internal/respapi"
	"github.com/cairnkv/cairn/test/cluster"
)

// respCluster is a 3-node cluster with a RESP server on every node.
type respCluster struct {
	c       *cluster.Cluster
	servers []*respapi.Server
	addrs   []string
}

func newRESPCluster(t *testing.T) *respCluster {
	t.Helper()
	return newRESPClusterWith(t, cluster.Options{})
}

func newRESPClusterWith(t *testing.T, o cluster.Options) *respCluster {
	t.Helper()
	rc := &respCluster{c: cluster.New(t, 3, o)}
	for i := range rc.c.Nodes {
		rc.startRESP(t, i)
	}
	return rc
}

func (rc *respCluster) startRESP(t *testing.T, i int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := respapi.New(rc.c.Svc(i), respapi.Options{Version: "test",
		Logger: slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	for len(rc.servers) <= i {
		rc.servers = append(rc.servers, nil)
		rc.addrs = append(rc.addrs, "")
	}
	rc.servers[i], rc.addrs[i] = s, ln.Addr().String()
}

func (rc *respCluster) client(t *testing.T, i int) *redis.Client {
	t.Helper()
	cl := redis.NewClient(&redis.Options{Addr: rc.addrs[i], Protocol: 2, MaxRetries: -1,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second})
	t.Cleanup(func() { cl.Close() })
	return cl
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	defer func() { _ = recover() }() // the test may have ended
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// retry runs fn until it succeeds or d passes (a leader election may be under way).
func retry(t *testing.T, d time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %s: %v", d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestRedisClientsAgainstCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	ctx := context.Background()
	rc := newRESPCluster(t)
	leader := rc.c.WaitLeader(10 * time.Second)
	follower := (leader + 1) % 3
	other := (leader + 2) % 3
	fc := rc.client(t, follower)

	t.Run("write on a follower", func(t *testing.T) {
		if err := fc.Set(ctx, "greeting", "hello", 0).Err(); err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{leader, follower, other} {
			got, err := rc.client(t, i).Get(ctx, "greeting").Result()
			if err != nil || got != "hello" {
				t.Errorf("node %d: GET = %q, %v", i, got, err)
			}
		}
		if _, err := fc.Get(ctx, "nothing").Result(); !errors.Is(err, redis.Nil) {
			t.Errorf("GET missing: %v", err)
		}
	})

	t.Run("incr", func(t *testing.T) {
		for i := 1; i <= 3; i++ {
			n, err := fc.Incr(ctx, "counter").Result()
			if err != nil || n != int64(i) {
				t.Fatalf("INCR = %d, %v", n, err)
			}
		}
		if n, err := fc.IncrBy(ctx, "counter", 10).Result(); err != nil || n != 13 {
			t.Errorf("INCRBY = %d, %v", n, err)
		}
		if err := fc.Incr(ctx, "greeting").Err(); err == nil || !strings.Contains(err.Error(), "not an integer") {
			t.Errorf("INCR on text: %v", err)
		}
	})

	t.Run("expiry", func(t *testing.T) {
		if err := fc.Set(ctx, "session", "s", 10*time.Second).Err(); err != nil {
			t.Fatal(err)
		}
		ttl, err := fc.TTL(ctx, "session").Result()
		if err != nil || ttl < 8*time.Second || ttl > 10*time.Second {
			t.Errorf("TTL = %s, %v", ttl, err)
		}
		if err := fc.Set(ctx, "short", "s", 200*time.Millisecond).Err(); err != nil {
			t.Fatal(err)
		}
		retry(t, 3*time.Second, func() error {
			if n, err := fc.Exists(ctx, "short").Result(); err != nil || n != 0 {
				return fmt.Errorf("EXISTS = %d, %v", n, err)
			}
			return nil
		})
		if ttl, err := fc.TTL(ctx, "nothing").Result(); err != nil || ttl != -2*time.Nanosecond {
			t.Errorf("TTL of a missing key = %v, %v", ttl, err)
		}
	})

	t.Run("pipelining", func(t *testing.T) {
		pipe := fc.Pipeline()
		for i := 0; i < 100; i++ {
			pipe.Set(ctx, fmt.Sprintf("p:%03d", i), i, 0)
		}
		cmds, err := pipe.Exec(ctx)
		if err != nil || len(cmds) != 100 {
			t.Fatalf("pipelined SETs: %d, %v", len(cmds), err)
		}
		gets := make([]*redis.StringCmd, 100)
		pipe = fc.Pipeline()
		for i := range gets {
			gets[i] = pipe.Get(ctx, fmt.Sprintf("p:%03d", i))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		for i, g := range gets {
			if g.Val() != fmt.Sprint(i) {
				t.Fatalf("GET p:%03d = %q", i, g.Val())
			}
		}
		keys, err := fc.Keys(ctx, "p:09*").Result()
		if err != nil || len(keys) != 10 {
			t.Errorf("KEYS = %v, %v", keys, err)
		}
		var scanned []string
		iter := fc.Scan(ctx, 0, "p:*", 30).Iterator()
		for iter.Next(ctx) {
			scanned = append(scanned, iter.Val())
		}
		if err := iter.Err(); err != nil || len(scanned) != 100 {
			t.Errorf("SCAN found %d keys, %v", len(scanned), err)
		}
	})

	t.Run("multi exec with watch", func(t *testing.T) {
		if err := fc.Set(ctx, "balance", "100", 0).Err(); err != nil {
			t.Fatal(err)
		}
		cmds, err := fc.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.DecrBy(ctx, "balance", 30)
			p.IncrBy(ctx, "savings", 30)
			p.Get(ctx, "balance")
			return nil
		})
		if err != nil || len(cmds) != 3 || cmds[2].(*redis.StringCmd).Val() != "70" {
			t.Fatalf("MULTI/EXEC: %v %v", cmds, err)
		}
		intruder := rc.client(t, other)
		err = fc.Watch(ctx, func(tx *redis.Tx) error {
			if _, err := tx.Get(ctx, "balance").Result(); err != nil {
				return err
			}
			if err := intruder.Set(ctx, "balance", "0", 0).Err(); err != nil {
				return err
			}
			_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, "balance", "999", 0)
				return nil
			})
			return err
		}, "balance")
		if !errors.Is(err, redis.TxFailedErr) {
			t.Fatalf("EXEC after a conflicting write: %v", err)
		}
		if v, _ := fc.Get(ctx, "balance").Result(); v != "0" {
			t.Errorf("balance = %q after the aborted transaction", v)
		}
	})

	t.Run("errors and admin", func(t *testing.T) {
		err := fc.Do(ctx, "LPUSH", "list", "x").Err()
		if err == nil || !strings.Contains(err.Error(), "unknown command 'LPUSH'") {
			t.Errorf("LPUSH: %v", err)
		}
		members, err := fc.Do(ctx, "RAFT", "SERVER", "LIST").Slice()
		if err != nil || len(members) != 3 {
			t.Errorf("RAFT SERVER LIST = %v, %v", members, err)
		}
		info, err := fc.Info(ctx, "replication").Result()
		if err != nil || !strings.Contains(info, "role:slave") {
			t.Errorf("INFO on a follower: %q, %v", info, err)
		}
		info, err = rc.client(t, leader).Info(ctx, "replication").Result()
		if err != nil || !strings.Contains(info, "role:master") {
			t.Errorf("INFO on the leader: %q, %v", info, err)
		}
	})

	t.Run("reads after failover", func(t *testing.T) {
		rc.servers[leader].Close()
		rc.c.Stop(leader)
		survivor := rc.client(t, follower)
		retry(t, 20*time.Second, func() error {
			v, err := survivor.Get(ctx, "greeting").Result()
			if err != nil {
				return err
			}
			if v != "hello" {
				t.Fatalf("GET greeting = %q after failover", v)
			}
			return nil
		})
		if n, err := survivor.Get(ctx, "counter").Int(); err != nil || n != 13 {
			t.Errorf("counter = %d, %v after failover", n, err)
		}
		retry(t, 20*time.Second, func() error { return survivor.Set(ctx, "after", "failover", 0).Err() })
		got, err := rc.client(t, other).Get(ctx, "after").Result()
		if err != nil || got != "failover" {
			t.Errorf("GET after = %q, %v", got, err)
		}
		if got, err := rc.client(t, other).Do(ctx, "RAFT", "LEADER").Text(); err != nil || got == "" {
			t.Errorf("RAFT LEADER = %q, %v", got, err)
		}
	})
}

// TestRedisToolsAgainstCluster runs redis-cli and redis-benchmark (Debian
// package redis-tools) against a follower; it is skipped where they are not
// installed.
func TestRedisToolsAgainstCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	cli, err1 := exec.LookPath("redis-cli")
	bench, err2 := exec.LookPath("redis-benchmark")
	if err1 != nil || err2 != nil {
		t.Skip("redis-cli or redis-benchmark not installed (Debian package redis-tools)")
	}
	// This test is about the tools, not failover: election timeouts long
	// enough that a busy machine (the race detector, parallel packages) does
	// not lose the leader under redis-benchmark's load.
	rc := newRESPClusterWith(t, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout = 2*time.Second, 2*time.Second
	}})
	leader := rc.c.WaitLeader(10 * time.Second)
	host, port, _ := net.SplitHostPort(rc.addrs[(leader+1)%3])
	run := func(stdin string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %q: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	redisCLI := func(stdin string, args ...string) string {
		return run(stdin, cli, append([]string{"-h", host, "-p", port}, args...)...)
	}
	checks := []struct {
		args []string
		want string
	}{
		{[]string{"SET", "tool", "v"}, "OK\n"},
		{[]string{"GET", "tool"}, "v\n"},
		{[]string{"EXPIRE", "tool", "100"}, "1\n"},
		{[]string{"TTL", "tool"}, "100\n"},
		{[]string{"NOSUCH"}, "ERR unknown command 'NOSUCH', with args beginning with: "},
	}
	for _, c := range checks {
		if got := redisCLI("", c.args...); !strings.HasPrefix(got, c.want) {
			t.Errorf("redis-cli %q = %q, want %q", c.args, got, c.want)
		}
	}
	if got := redisCLI("MULTI\nSET m 1\nINCR m\nEXEC\n"); got != "OK\nQUEUED\nQUEUED\nOK\n2\n" {
		t.Errorf("redis-cli MULTI/EXEC = %q", got)
	}
	if got := redisCLI("", "--scan", "--pattern", "too*"); got != "tool\n" {
		t.Errorf("redis-cli --scan = %q", got)
	}
	if got := redisCLI("", "INFO", "replication"); !strings.Contains(got, "role:slave") {
		t.Errorf("redis-cli INFO = %q", got)
	}
	if got := redisCLI("", "RAFT", "SERVER", "LIST"); strings.Count(got, "voter") != 3 {
		t.Errorf("redis-cli RAFT SERVER LIST = %q", got)
	}
	out := run("", bench, "-h", host, "-p", port, "-t", "set,get,incr,mset", "-P", "16", "-n", "20000", "-q")
	t.Logf("redis-benchmark:\n%s", out)
	for _, test := range []string{"SET:", "GET:", "INCR:", "MSET (10 keys):"} {
		if !strings.Contains(out, test) {
			t.Errorf("redis-benchmark did not run %s", test)
		}
	}
	if strings.Contains(strings.ToLower(out), "error") || strings.Contains(out, "WARNING") {
		t.Errorf("redis-benchmark reported problems:\n%s", out)
	}
}
