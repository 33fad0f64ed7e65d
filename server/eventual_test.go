package server_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cairnkv/cairn/config"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/test/cluster"
)

// eventualCluster starts n nodes with an anti-entropy interval ae (long
// intervals keep anti-entropy out of a test about another mechanism) and
// creates the eventual keyspace ev/ with the given replicas and quorums.
func eventualCluster(t *testing.T, n int, ae time.Duration, replicas, w, r int) *cluster.Cluster {
	t.Helper()
	c := cluster.New(t, n, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.AntiEntropyInterval = ae
		cfg.RequestTimeout = 2 * time.Second
	}})
	p := keyspace.Policy{Prefix: "ev/", Mode: keyspace.Eventual, Replicas: replicas, WriteQuorum: w, ReadQuorum: r, SloppyQuorum: true}
	if _, err := c.Svc(0).PutKeyspace(ctx(t), p); err != nil {
		t.Fatal(err)
	}
	return c
}

func localValue(t *testing.T, c *cluster.Cluster, i int, key string) (string, bool) {
	r, err := c.Svc(i).Get(ctx(t), key, kv.ReadOptions{Local: true})
	if err != nil {
		return "", false
	}
	return string(r.Value), true
}

// waitLocal waits until node i's own copy of key is want ("" for absent).
func waitLocal(t *testing.T, c *cluster.Cluster, i int, key, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		v, ok := localValue(t, c, i, key)
		if (want == "" && !ok) || (ok && v == want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d holds %s=%q (present %v) after %v, want %q", i, key, v, ok, d, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// owners returns the cluster indexes of key's preference list.
func owners(t *testing.T, c *cluster.Cluster, key string) []int {
	t.Helper()
	info, err := c.Svc(0).Ring(ctx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, name := range info.Preference {
		for i, nd := range c.Nodes {
			if nd.Name == name {
				out = append(out, i)
			}
		}
	}
	return out
}

// A write is answered after W durable copies, with its timestamp, and with
// fewer than W reachable replicas it fails with 503 naming the count.
func TestEventualWriteQuorum(t *testing.T) {
	c := eventualCluster(t, 3, time.Hour, 3, 2, 1)
	r, err := c.Svc(1).Put(ctx(t), "ev/a", []byte("1"), kv.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Timestamp == "" || r.Origin != c.Nodes[1].Name || r.Acks < 2 || r.Replicas != 3 {
		t.Fatalf("write answer %+v", r)
	}
	for i := range 3 {
		waitLocal(t, c, i, "ev/a", "1", 5*time.Second)
	}
	c.Partition(0)
	_, err = c.Svc(0).Put(ctx(t), "ev/b", []byte("x"), kv.PutOptions{})
	if !errors.Is(err, kv.ErrUnavailable) || !strings.Contains(err.Error(), "1 of 2 write acks") {
		t.Fatalf("write with one of three reachable: %v", err)
	}
	// w=1 on the isolated node is the local fallback.
	if _, err := c.Svc(0).Put(ctx(t), "ev/b", []byte("y"), kv.PutOptions{WriteQuorum: 1}); err != nil {
		t.Fatalf("w=1 write on an isolated node: %v", err)
	}
	// The other side keeps its quorum.
	if _, err := c.Svc(1).Put(ctx(t), "ev/c", []byte("z"), kv.PutOptions{}); err != nil {
		t.Fatalf("W=2 write on the majority side: %v", err)
	}
}

// With sloppy quorum a write whose owner is unreachable goes to a stand-in
// that keeps a hint and hands the write over when the owner is back (no
// anti-entropy in this test).
func TestEventualHintedHandoff(t *testing.T) {
	c := eventualCluster(t, 3, time.Hour, 2, 2, 1)
	key := "ev/hinted"
	own := owners(t, c, key)
	if len(own) != 2 {
		t.Fatalf("owners %v", own)
	}
	down, up := own[1], own[0]
	standIn := 3 - down - up
	c.Partition(down)
	time.Sleep(2 * time.Second) // the failure detector marks it damaged
	r, err := c.Svc(up).Put(ctx(t), key, []byte("v"), kv.PutOptions{})
	if err != nil || r.Acks != 2 {
		t.Fatalf("sloppy write with one owner down: %+v %v", r, err)
	}
	if v, ok := localValue(t, c, standIn, key); ok {
		t.Fatalf("the stand-in holds the key as a replica (%q), want only a hint", v)
	}
	if _, ok := localValue(t, c, down, key); ok {
		t.Fatal("the partitioned owner has the key already")
	}
	c.Heal()
	waitLocal(t, c, down, key, "v", 10*time.Second)
}

// A read at R=all returns the newest version and repairs a stale replica.
func TestEventualReadRepair(t *testing.T) {
	c := eventualCluster(t, 3, time.Hour, 3, 1, 1)
	mustPut(t, c.Svc(0), "ev/r", "old")
	for i := range 3 {
		waitLocal(t, c, i, "ev/r", "old", 5*time.Second)
	}
	c.Partition(2)
	if _, err := c.Svc(0).Put(ctx(t), "ev/r", []byte("new"), kv.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	c.Heal()
	// Before hints are delivered (node 2 must first pass its validation
	// rounds), a read that asks every replica repairs it.
	got, err := c.Svc(1).Get(ctx(t), "ev/r", kv.ReadOptions{ReadQuorum: 3})
	if err != nil || string(got.Value) != "new" {
		t.Fatalf("R=3 read: %+v %v", got, err)
	}
	waitLocal(t, c, 2, "ev/r", "new", time.Second)
}

// After a partition in which both sides wrote, anti-entropy makes every
// replica hold the newest version of every key, deletes included.
func TestEventualAntiEntropyAfterPartition(t *testing.T) {
	c := eventualCluster(t, 3, time.Second, 3, 1, 1)
	mustPut(t, c.Svc(0), "ev/gone", "doomed")
	for i := range 3 {
		waitLocal(t, c, i, "ev/gone", "doomed", 5*time.Second)
	}
	c.Partition(0)
	for k := range 20 {
		mustPut(t, c.Svc(0), fmt.Sprintf("ev/left/%d", k), "L")
		mustPut(t, c.Svc(1), fmt.Sprintf("ev/right/%d", k), "R")
	}
	mustPut(t, c.Svc(0), "ev/both", "left")
	time.Sleep(5 * time.Millisecond)
	mustPut(t, c.Svc(2), "ev/both", "right") // the later stamp wins
	if _, _, err := c.Svc(2).Delete(ctx(t), "ev/gone", kv.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.Heal()
	for i := range 3 {
		for k := range 20 {
			waitLocal(t, c, i, fmt.Sprintf("ev/left/%d", k), "L", 10*time.Second)
			waitLocal(t, c, i, fmt.Sprintf("ev/right/%d", k), "R", 10*time.Second)
		}
		waitLocal(t, c, i, "ev/both", "right", 10*time.Second)
		waitLocal(t, c, i, "ev/gone", "", 10*time.Second)
	}
	// The deleted value never comes back.
	time.Sleep(3 * time.Second)
	for i := range 3 {
		if v, ok := localValue(t, c, i, "ev/gone"); ok {
			t.Fatalf("node %d resurrected ev/gone=%q", i, v)
		}
	}
}

// A TTL is an absolute expiry the coordinator sets: the key disappears on
// every replica.
func TestEventualTTL(t *testing.T) {
	c := eventualCluster(t, 3, time.Second, 3, 3, 1)
	if _, err := c.Svc(0).Put(ctx(t), "ev/ttl", []byte("v"), kv.PutOptions{TTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	if v, ok := localValue(t, c, 2, "ev/ttl"); !ok || v != "v" {
		t.Fatalf("node 2 before expiry: %q %v", v, ok)
	}
	time.Sleep(1200 * time.Millisecond)
	for i := range 3 {
		if _, ok := localValue(t, c, i, "ev/ttl"); ok {
			t.Fatalf("node %d still serves the expired key", i)
		}
	}
}

// What needs agreement is refused on eventual keys and changes nothing.
func TestEventualRefusesAgreement(t *testing.T) {
	c := eventualCluster(t, 3, time.Hour, 3, 2, 1)
	mustPut(t, c.Svc(0), "ev/k", "1")
	rev := int64(1)
	txns := map[string]kv.Txn{
		"compare": {Compare: []kv.Compare{{Key: "ev/k", Target: kv.TargetValue, Op: "=", Value: []byte("1")}},
			Success: []kv.Op{{Type: kv.OpPut, Key: "ev/k", Value: []byte("2")}}},
		"incr":    {Success: []kv.Op{{Type: kv.OpIncr, Key: "ev/k", Value: []byte("1")}}},
		"append":  {Success: []kv.Op{{Type: kv.OpAppend, Key: "ev/k", Value: []byte("2")}}},
		"getset":  {Success: []kv.Op{{Type: kv.OpPut, Key: "ev/k", Value: []byte("2"), ReturnPrev: true}}},
		"mixed":   {Success: []kv.Op{{Type: kv.OpPut, Key: "ev/k", Value: []byte("2")}, {Type: kv.OpPut, Key: "strong", Value: []byte("2")}}},
		"renamed": {Success: []kv.Op{{Type: kv.OpRename, Key: "ev/k", Value: []byte("ev/j")}}},
	}
	for name, txn := range txns {
		_, err := c.Svc(1).Txn(ctx(t), txn)
		if !errors.Is(err, kv.ErrUnsupportedMode) {
			t.Errorf("%s: %v, want ErrUnsupportedMode", name, err)
		} else if name != "mixed" && !strings.Contains(err.Error(), "eventual") {
			t.Errorf("%s: %v does not say the keyspace is eventual", name, err)
		}
	}
	if _, err := c.Svc(1).Put(ctx(t), "ev/k", []byte("2"), kv.PutOptions{IfModRevision: &rev}); !errors.Is(err, kv.ErrUnsupportedMode) {
		t.Errorf("If-Match put: %v", err)
	}
	// W=2 and R=2 of 3 replicas overlap: the read sees the write.
	if got := mustGetValue(t, c.Svc(2), "ev/k", kv.ReadOptions{ReadQuorum: 2}); got != "1" {
		t.Fatalf("a refused op changed ev/k to %q", got)
	}
	// A batch of puts and deletes is one version on each replica.
	res, err := c.Svc(2).Txn(ctx(t), kv.Txn{Success: []kv.Op{
		{Type: kv.OpPut, Key: "ev/cert.pem", Value: []byte("C")}, {Type: kv.OpPut, Key: "ev/key.pem", Value: []byte("K")}, {Type: kv.OpDelete, Key: "ev/k"}}})
	if err != nil || res.Timestamp == "" {
		t.Fatalf("batch: %+v %v", res, err)
	}
	a, _ := c.Svc(0).Get(ctx(t), "ev/cert.pem", kv.ReadOptions{ReadQuorum: 2})
	b, _ := c.Svc(0).Get(ctx(t), "ev/key.pem", kv.ReadOptions{ReadQuorum: 2})
	if a == nil || b == nil || a.Timestamp != res.Timestamp || b.Timestamp != res.Timestamp {
		t.Fatalf("batch versions %+v %+v, want both at %s", a, b, res.Timestamp)
	}
}

// Keyspace changes that would move eventual keys are refused (409).
func TestEventualKeyspaceConflicts(t *testing.T) {
	c := eventualCluster(t, 3, time.Hour, 3, 2, 1)
	mustPut(t, c.Svc(0), "ev/sub/x", "1")
	if _, err := c.Svc(1).DeleteKeyspace(ctx(t), "ev/"); !errors.Is(err, kv.ErrConflict) {
		t.Fatalf("delete of a keyspace with keys: %v", err)
	}
	if _, err := c.Svc(1).PutKeyspace(ctx(t), keyspace.Policy{Prefix: "ev/sub/", Mode: keyspace.Strong}); !errors.Is(err, kv.ErrConflict) {
		t.Fatalf("a keyspace over eventual keys: %v", err)
	}
	if _, _, err := c.Svc(1).Delete(ctx(t), "ev/sub/x", kv.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Svc(1).DeleteKeyspace(ctx(t), "ev/"); err != nil {
		t.Fatalf("delete of an emptied keyspace: %v", err)
	}
}

// A member that joins gets the ranges it now owns, and the members that no
// longer own a key hand it off and drop it.
func TestEventualRebalanceOnJoin(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.AntiEntropyInterval = time.Second
	}})
	if _, err := c.Svc(0).PutKeyspace(ctx(t), keyspace.Policy{Prefix: "ev/", Mode: keyspace.Eventual, Replicas: 2, WriteQuorum: 2, ReadQuorum: 1, SloppyQuorum: true}); err != nil {
		t.Fatal(err)
	}
	const keys = 200
	for k := range keys {
		mustPut(t, c.Svc(k%3), fmt.Sprintf("ev/%d", k), "v")
	}
	c.AddNode(0, false)
	deadline := time.Now().Add(30 * time.Second)
	for {
		bad := ""
		moved := 0
		for k := range keys {
			key := fmt.Sprintf("ev/%d", k)
			own := owners(t, c, key)
			for i := range 4 {
				_, has := localValue(t, c, i, key)
				want := false
				for _, o := range own {
					want = want || o == i
				}
				if want && i == 3 {
					moved++
				}
				if has != want && bad == "" {
					bad = fmt.Sprintf("%s on node %d: holds %v, owner %v (owners %v)", key, i, has, want, own)
				}
			}
		}
		if bad == "" {
			if moved == 0 {
				t.Fatal("the new member owns nothing")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(bad)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Every key stays readable from every node.
	for k := range keys {
		for i := range 4 {
			if got := mustGetValue(t, c.Svc(i), fmt.Sprintf("ev/%d", k), kv.ReadOptions{}); got != "v" {
				t.Fatalf("ev/%d on node %d: %q", k, i, got)
			}
		}
	}
}

// Over the Redis protocol an eventual key behaves as the issue lists:
// strings with TTLs, multi-key reads and writes, cluster-wide KEYS and
// SCAN, and errors naming the eventual keyspace for what needs agreement.
func TestEventualRESP(t *testing.T) {
	c := eventualCluster(t, 3, time.Hour, 3, 3, 1)
	rdb := redis.NewClient(&redis.Options{Addr: c.Nodes[1].RESPAddr})
	defer rdb.Close()
	cx := ctx(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(rdb.Set(cx, "ev/a", "hello", time.Minute).Err())
	must(rdb.MSet(cx, "ev/b", "1", "ev/c", "2").Err())
	must(rdb.Set(cx, "plain", "strong", 0).Err())
	if got, _ := rdb.MGet(cx, "ev/a", "ev/b", "ev/none").Result(); fmt.Sprint(got) != "[hello 1 <nil>]" {
		t.Fatalf("MGET %v", got)
	}
	if ttl, _ := rdb.TTL(cx, "ev/a").Result(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("TTL %v", ttl)
	}
	if ok, _ := rdb.Persist(cx, "ev/a").Result(); !ok {
		t.Fatal("PERSIST")
	}
	if ttl, _ := rdb.TTL(cx, "ev/a").Result(); ttl != -1 {
		t.Fatalf("TTL after PERSIST %v", ttl)
	}
	if n, _ := rdb.StrLen(cx, "ev/a").Result(); n != 5 {
		t.Fatalf("STRLEN %d", n)
	}
	if s, _ := rdb.GetRange(cx, "ev/a", 1, 3).Result(); s != "ell" {
		t.Fatalf("GETRANGE %q", s)
	}
	if n, _ := rdb.Exists(cx, "ev/a", "ev/b", "ev/zz").Result(); n != 2 {
		t.Fatalf("EXISTS %d", n)
	}
	// KEYS asks every node, so it is the same from any node.
	for i := range 3 {
		other := redis.NewClient(&redis.Options{Addr: c.Nodes[i].RESPAddr})
		keys, err := other.Keys(cx, "ev/*").Result()
		other.Close()
		if err != nil || fmt.Sprint(keys) != "[ev/a ev/b ev/c]" {
			t.Fatalf("KEYS on node %d: %v %v", i, keys, err)
		}
	}
	var scanned []string
	iter := rdb.Scan(cx, 0, "ev/*", 2).Iterator()
	for iter.Next(cx) {
		scanned = append(scanned, iter.Val())
	}
	if fmt.Sprint(scanned) != "[ev/a ev/b ev/c]" {
		t.Fatalf("SCAN %v %v", scanned, iter.Err())
	}
	if n, _ := rdb.Del(cx, "ev/b", "ev/zz").Result(); n != 1 {
		t.Fatalf("DEL answered %d, want 1", n)
	}
	for name, err := range map[string]error{
		"INCR":   rdb.Incr(cx, "ev/c").Err(),
		"SET NX": rdb.SetNX(cx, "ev/new", "x", 0).Err(),
		"GETSET": rdb.Do(cx, "GETSET", "ev/a", "x").Err(),
		"APPEND": rdb.Append(cx, "ev/a", "x").Err(),
		"RENAME": rdb.Rename(cx, "ev/a", "ev/q").Err(),
	} {
		if err == nil || !strings.Contains(err.Error(), "eventual") {
			t.Errorf("%s: %v, want an error naming the eventual keyspace", name, err)
		}
	}
	if got, _ := rdb.Get(cx, "ev/a").Result(); got != "hello" {
		t.Fatalf("refused commands changed ev/a to %q", got)
	}
}

// When a member is removed (and gone), the keys it held get a new second
// replica from the one that is left, and stay readable throughout.
func TestEventualRebalanceOnRemove(t *testing.T) {
	c := cluster.New(t, 4, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.AntiEntropyInterval = time.Second
	}})
	if _, err := c.Svc(0).PutKeyspace(ctx(t), keyspace.Policy{Prefix: "ev/", Mode: keyspace.Eventual, Replicas: 2, WriteQuorum: 2, ReadQuorum: 1, SloppyQuorum: true}); err != nil {
		t.Fatal(err)
	}
	const keys = 200
	for k := range keys {
		mustPut(t, c.Svc(k%4), fmt.Sprintf("ev/%d", k), "v")
	}
	gone := 3
	if c.Leader() == gone {
		gone = 2
	}
	name := c.Nodes[gone].Name
	c.Stop(gone)
	var via int
	for i := range 4 {
		if i != gone {
			via = i
			break
		}
	}
	if err := c.Svc(via).RemoveMember(ctx(t), name); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		bad := ""
		for k := range keys {
			key := fmt.Sprintf("ev/%d", k)
			own := owners(t, c, key)
			if len(own) != 2 || slices.Contains(own, gone) {
				bad = fmt.Sprintf("%s owners %v (node %d removed)", key, own, gone)
				break
			}
			for _, o := range own {
				if _, has := localValue(t, c, o, key); !has && bad == "" {
					bad = fmt.Sprintf("%s not yet on its owner node %d", key, o)
				}
			}
			// Readable from every remaining node all along.
			if got := mustGetValue(t, c.Svc(own[0]), key, kv.ReadOptions{}); got != "v" {
				t.Fatalf("%s reads %q", key, got)
			}
		}
		if bad == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(bad)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A node whose clock runs beyond the bound ahead of the others stops
// coordinating writes, and its future stamps reach no other replica; once
// its clock is right (and real time has passed what it stamped) it writes
// again.
func TestEventualClockAhead(t *testing.T) {
	c := eventualCluster(t, 3, time.Second, 3, 1, 1)
	c.Hooks(0).ClockSkew.Store(int64(2 * time.Second))
	time.Sleep(1500 * time.Millisecond) // heartbeats measure the offset
	_, err := c.Svc(0).Put(ctx(t), "ev/x", []byte("future"), kv.PutOptions{})
	if !errors.Is(err, kv.ErrUnavailable) || !strings.Contains(err.Error(), "clock") {
		t.Fatalf("a write on the node 2 s ahead: %v, want 503 naming its clock", err)
	}
	if _, err := c.Svc(1).Put(ctx(t), "ev/x", []byte("now"), kv.PutOptions{WriteQuorum: 3}); err != nil {
		t.Fatalf("W=3 write on a node with a good clock: %v", err)
	}
	c.Hooks(0).ClockSkew.Store(0)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.Svc(0).Put(ctx(t), "ev/y", []byte("back"), kv.PutOptions{WriteQuorum: 3})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node's writes still fail after its clock was set right: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for i := range 3 {
		waitLocal(t, c, i, "ev/x", "now", 5*time.Second)
	}
}

// A member removed while it runs hands the keys it held to their owners on
// the smaller ring and then drops them.
func TestEventualRemovedMemberHandsOff(t *testing.T) {
	c := cluster.New(t, 4, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.AntiEntropyInterval = time.Second
	}})
	if _, err := c.Svc(0).PutKeyspace(ctx(t), keyspace.Policy{Prefix: "ev/", Mode: keyspace.Eventual, Replicas: 1, WriteQuorum: 1, ReadQuorum: 1}); err != nil {
		t.Fatal(err)
	}
	gone := 3
	if c.Leader() == gone {
		gone = 2
	}
	// With one replica per key, some keys live on the leaving node only.
	const keys = 100
	mine := 0
	for k := range keys {
		key := fmt.Sprintf("ev/%d", k)
		mustPut(t, c.Svc(0), key, "v")
		if own := owners(t, c, key); len(own) == 1 && own[0] == gone {
			mine++
		}
	}
	if mine == 0 {
		t.Fatal("the leaving node owns none of the keys")
	}
	via := (gone + 1) % 4
	if err := c.Svc(via).RemoveMember(ctx(t), c.Nodes[gone].Name); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		held, missing := 0, ""
		for k := range keys {
			key := fmt.Sprintf("ev/%d", k)
			if _, ok := localValue(t, c, gone, key); ok {
				held++
			}
			own := owners(t, c, key)
			if len(own) != 1 || own[0] == gone {
				missing = fmt.Sprintf("%s: owners %v still name the removed node", key, own)
			} else if _, ok := localValue(t, c, own[0], key); !ok && missing == "" {
				missing = fmt.Sprintf("%s not on its new owner node %d", key, own[0])
			}
		}
		if held == 0 && missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the removal: the removed node still holds %d keys; %s", held, missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
