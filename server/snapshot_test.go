package server_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/redis/go-redis/v9"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/config"
	"github.com/cairnkv/cairn/internal/backup"
	"github.com/cairnkv/cairn/internal/backup/snapfile"
	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/test/cluster"
)

// TestSnapshotSaveRestore: a snapshot of a live cluster (strong keys with
// a TTL and revisions, users, rules, policies, an eventual keyspace whose
// keys each live on two of three nodes) restored into three fresh members
// of a new cluster brings every one of them back; the new cluster takes
// writes; a truncated snapshot and a non-empty data directory are refused
// and leave nothing.
func TestSnapshotSaveRestore(t *testing.T) {
	c := eventualCluster(t, 3, time.Hour, 2, 1, 1)
	svc := c.Svc(0)
	for i := range 50 {
		mustPut(t, svc, fmt.Sprintf("app/k%02d", i), fmt.Sprintf("v%d", i))
	}
	if _, err := svc.Put(ctx(t), "app/ttl", []byte("t"), kv.PutOptions{TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := c.Svc(i%3).Put(ctx(t), fmt.Sprintf("ev/e%02d", i), []byte(fmt.Sprintf("e%d", i)), kv.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.PutKeyspace(ctx(t), keyspace.Policy{Prefix: "sessions/", Mode: keyspace.Strong, DefaultTTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := svc.PutUser(ctx(t), "alice", "secret-pw"); err != nil {
		t.Fatal(err)
	}
	rules := []auth.Rule{{Identity: ".*", Actions: []string{"read", "write", "admin"}}, {Identity: "alice", Keys: "app/", Actions: []string{"read"}}}
	if err := svc.SetRules(ctx(t), rules); err != nil {
		t.Fatal(err)
	}
	before, err := svc.Status(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	// The first leader names the cluster; every member learns the name.
	for i := range 3 {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			st, err := c.Svc(i).Status(ctx(t))
			if err == nil && st.ClusterID != "" {
				if before.ClusterID == "" {
					before.ClusterID = st.ClusterID
				}
				if st.ClusterID != before.ClusterID {
					t.Fatalf("n%d names the cluster %s, n1 %s", i+1, st.ClusterID, before.ClusterID)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("n%d has no cluster ID after 10 s", i+1)
			}
		}
	}
	var file bytes.Buffer
	info, err := c.Svc(1).SaveSnapshot(ctx(t), &file, kv.SnapshotMeta{Node: "n2"})
	if err != nil {
		t.Fatal(err)
	}
	if info.StrongKeys != 51 || info.EventualKeys != 20 || info.Users != 1 || info.Revision < before.Revision {
		t.Fatalf("snapshot info %+v (revision before %d)", info, before.Revision)
	}
	// A member that lost its quorum can still save its own state.
	c.Stop(0)
	c.Stop(2)
	var local bytes.Buffer
	if _, err := c.Svc(1).SaveSnapshot(ctx(t), &local, kv.SnapshotMeta{}); err == nil {
		t.Fatal("a linearizable snapshot without a quorum succeeded")
	}
	linfo, err := c.Svc(1).SaveSnapshot(ctx(t), &local, kv.SnapshotMeta{Local: true})
	if err != nil || linfo.StrongKeys != 51 || linfo.EventualKeys == 0 {
		t.Fatalf("a local snapshot on the survivor: %+v %v", linfo, err)
	}
	path := filepath.Join(t.TempDir(), "cluster.snapshot")
	if err := os.WriteFile(path, file.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Close()

	// A truncated file and a used data directory are refused, leaving nothing.
	half := filepath.Join(t.TempDir(), "half.snapshot")
	if err := os.WriteFile(half, file.Bytes()[:file.Len()/2], 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	if _, err := backup.Restore(half, bad, []raftnode.Peer{{ID: "n1", Addr: "127.0.0.1:1"}}); !errors.Is(err, snapfile.ErrCorrupt) {
		t.Fatalf("a truncated snapshot: %v", err)
	}
	if _, err := os.Stat(bad); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused restore left %s: %v", bad, err)
	}
	used := t.TempDir()
	if err := os.WriteFile(filepath.Join(used, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Restore(path, used, []raftnode.Peer{{ID: "n1", Addr: "127.0.0.1:1"}}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("a used data directory: %v", err)
	}

	// Three fresh members, restored from the file.
	r := cluster.New(t, 3, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		peers, err := config.ParseInitialCluster(cfg.InitialCluster)
		if err != nil {
			t.Fatal(err)
		}
		var members []raftnode.Peer
		for _, p := range peers {
			members = append(members, raftnode.Peer{ID: p.Name, Addr: p.Addr})
		}
		if _, err := backup.Restore(path, cfg.DataDir, members); err != nil {
			t.Fatal(err)
		}
	}})
	for i := range 3 {
		s := r.Svc(i)
		for j := range 50 {
			if got := mustGetValue(t, s, fmt.Sprintf("app/k%02d", j), kv.ReadOptions{}); got != fmt.Sprintf("v%d", j) {
				t.Fatalf("n%d: app/k%02d is %q", i+1, j, got)
			}
		}
		rec, err := s.Get(ctx(t), "app/ttl", kv.ReadOptions{})
		if err != nil || rec.Expires == 0 {
			t.Fatalf("n%d: the TTL key came back as %+v %v", i+1, rec, err)
		}
		for j := range 20 {
			if got := mustGetValue(t, s, fmt.Sprintf("ev/e%02d", j), kv.ReadOptions{}); got != fmt.Sprintf("e%d", j) {
				t.Fatalf("n%d: ev/e%02d is %q", i+1, j, got)
			}
		}
	}
	st, err := r.Svc(0).Status(ctx(t))
	if err != nil || st.Revision < before.Revision || st.Members != 3 {
		t.Fatalf("restored status %+v %v (revision before %d)", st, err, before.Revision)
	}
	// The restored cluster has a name of its own, the same on every member
	// (each restored the file on its own), so the old members are refused
	// on its peer port.
	for i := range 3 {
		sti, err := r.Svc(i).Status(ctx(t))
		if err != nil || sti.ClusterID == "" || sti.ClusterID == before.ClusterID || sti.ClusterID != st.ClusterID {
			t.Fatalf("restored n%d: cluster ID %q (n1 %q, the saved cluster %q) %v", i+1, sti.ClusterID, st.ClusterID, before.ClusterID, err)
		}
	}
	if p, err := r.Svc(2).Keyspace(ctx(t), "sessions/"); err != nil || p.DefaultTTL != time.Minute {
		t.Fatalf("the sessions/ policy: %+v %v", p, err)
	}
	if p, err := r.Svc(2).Keyspace(ctx(t), "ev/"); err != nil || p.Mode != keyspace.Eventual || p.Replicas != 2 {
		t.Fatalf("the ev/ policy: %+v %v", p, err)
	}
	users, err := r.Svc(1).Users(ctx(t))
	if err != nil || len(users) != 1 || users[0].Name != "alice" {
		t.Fatalf("users: %+v %v", users, err)
	}
	_, got, err := r.Svc(1).Rules(ctx(t))
	if err != nil || len(got) != 2 || got[1].Identity != "alice" {
		t.Fatalf("rules: %+v %v", got, err)
	}
	members, err := r.Svc(0).Members(ctx(t))
	if err != nil || len(members) != 3 {
		t.Fatalf("members: %+v %v", members, err)
	}
	// The new cluster goes on from the saved revision.
	rec := mustPut(t, r.Svc(1), "app/after", "x")
	if rec.ModRevision <= info.Revision {
		t.Fatalf("a write after the restore got revision %d, the snapshot was at %d", rec.ModRevision, info.Revision)
	}

	// serve --restore: a single node starts from the file, and a restart
	// with the flag still set keeps its own state.
	one := cluster.New(t, 1, cluster.Options{Configure: func(_ int, cfg *config.Config) { cfg.Restore = path }})
	if got := mustGetValue(t, one.Svc(0), "app/k07", kv.ReadOptions{}); got != "v7" {
		t.Fatalf("serve --restore: app/k07 is %q", got)
	}
	mustPut(t, one.Svc(0), "app/k07", "changed")
	one.Stop(0)
	one.Start(0)
	one.WaitReady(20 * time.Second)
	if got := mustGetValue(t, one.Svc(0), "app/k07", kv.ReadOptions{}); got != "changed" {
		t.Fatalf("a restart with --restore still set: app/k07 is %q", got)
	}
}

// TestScheduledBackups: the leader, and only the leader, takes a backup
// every interval into its --backup-target, keeping --backup-retain.
func TestScheduledBackups(t *testing.T) {
	base := t.TempDir()
	dir := func(i int) string { return filepath.Join(base, fmt.Sprintf("n%d", i+1)) }
	c := cluster.New(t, 3, cluster.Options{Configure: func(i int, cfg *config.Config) {
		cfg.BackupTarget = "file://" + dir(i)
		cfg.BackupInterval = time.Second
		cfg.BackupRetain = 2
	}})
	mustPut(t, c.Svc(0), "app/a", "1")
	leader := -1
	deadline := time.Now().Add(20 * time.Second)
	for {
		for i := range 3 {
			target, _ := backup.ParseTarget("file://" + dir(i))
			if all, _ := backup.ListBackups(target); len(all) >= 2 {
				leader = i
			}
		}
		if leader >= 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no node took two backups within 20 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	st, err := c.Svc(leader).Status(ctx(t))
	if err != nil || st.Leader != st.Name {
		t.Fatalf("backups were taken by %s, the leader is %s (%v)", c.Nodes[leader].Name, st.Leader, err)
	}
	time.Sleep(1500 * time.Millisecond)
	target, _ := backup.ParseTarget("file://" + dir(leader))
	all, err := backup.ListBackups(target)
	if err != nil || len(all) != 2 {
		t.Fatalf("retained %+v %v", all, err)
	}
	if _, err := backup.VerifyFile(filepath.Join(dir(leader), all[1].Name)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if i == leader {
			continue
		}
		if entries, _ := os.ReadDir(dir(i)); len(entries) != 0 {
			t.Fatalf("follower n%d took backups: %v", i+1, entries)
		}
	}
	// RAFT SNAPSHOT LIST over the Redis protocol shows them.
	rc := redis.NewClient(&redis.Options{Addr: c.Nodes[leader].RESPAddr})
	defer rc.Close()
	// A backup may rotate away between the two commands: try again then.
	var data string
	for attempt := 0; ; attempt++ {
		list, err := rc.Do(ctx(t), "RAFT", "SNAPSHOT", "LIST").Slice()
		if err != nil || len(list) == 0 {
			t.Fatalf("RAFT SNAPSHOT LIST: %v %v", list, err)
		}
		last, _ := list[len(list)-1].([]any)
		if len(last) < 2 || last[0] != "id" {
			t.Fatalf("RAFT SNAPSHOT LIST: %v", list)
		}
		data, err = rc.Do(ctx(t), "RAFT", "SNAPSHOT", "READ", last[1]).Text()
		if err == nil {
			break
		}
		if attempt == 5 || !strings.Contains(err.Error(), "no snapshot") {
			t.Fatal(err)
		}
	}
	if _, err := snapfile.Verify(strings.NewReader(data)); err != nil {
		t.Fatalf("RAFT SNAPSHOT READ: %v", err)
	}
}

// TestEncryptedBackupRestore: a scheduled backup sealed for an age
// recipient holds no plaintext, and serve --restore opens it with the
// identity (and refuses without one).
func TestEncryptedBackupRestore(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key.txt")
	if err := os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := cluster.New(t, 1, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.BackupTarget, cfg.BackupInterval, cfg.BackupEncryptTo = "file://"+dir, time.Second, id.Recipient().String()
	}})
	mustPut(t, c.Svc(0), "secret/k", "the secret value")
	target, _ := backup.ParseTarget("file://" + dir)
	var name string
	for deadline := time.Now().Add(20 * time.Second); name == ""; time.Sleep(100 * time.Millisecond) {
		if all, _ := backup.ListBackups(target); len(all) > 0 && all[len(all)-1].Revision >= 1 {
			name = all[len(all)-1].Name
		}
		if time.Now().After(deadline) {
			t.Fatal("no backup within 20 s")
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil || !strings.HasSuffix(name, ".snapshot.age") || bytes.Contains(raw, []byte("the secret value")) {
		t.Fatalf("backup %s: plaintext in it, or %v", name, err)
	}
	c.Close()
	if _, err := backup.Restore(filepath.Join(dir, name), filepath.Join(t.TempDir(), "d"), []raftnode.Peer{{ID: "n1", Addr: "127.0.0.1:1"}}); !errors.Is(err, backup.ErrEncrypted) {
		t.Fatalf("a restore without the identity: %v", err)
	}
	r := cluster.New(t, 1, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.Restore, cfg.RestoreIdentity = "file://"+filepath.Join(dir, name), keyFile // a target URL, fetched
	}})
	if got := mustGetValue(t, r.Svc(0), "secret/k", kv.ReadOptions{}); got != "the secret value" {
		t.Fatalf("restored secret/k: %q", got)
	}
}
