package respapi

import (
	"reflect"
	"testing"
)

func TestMultiExec(t *testing.T) {
	f := newSpy(newService(t))
	srv := startServer(t, f, Options{})
	c := dial(t, srv)
	c.mustDo("+OK", "SET", "a", "1")
	c.mustDo("+OK", "MULTI")
	c.mustDo("-ERR MULTI calls can not be nested", "MULTI")
	c.mustDo("+QUEUED", "INCR", "a")
	c.mustDo("+QUEUED", "GET", "a")
	c.mustDo("+QUEUED", "SET", "b", "x", "GET")
	c.mustDo("+QUEUED", "APPEND", "b", "yz")
	c.mustDo("+QUEUED", "PING")
	c.mustDo("+QUEUED", "SET", "c", "1", "EX", "0") // a syntax error, answered inside EXEC
	c.mustDo("+QUEUED", "MGET", "a", "b", "zz")
	c.mustDo("+QUEUED", "EXPIRE", "b", "100")
	c.mustDo("+QUEUED", "TTL", "b")
	c.mustDo(`[:2 "2" nil :3 +PONG -ERR invalid expire time in 'set' command ["2" "xyz" nil] :1 :100]`, "EXEC")
	_, txns, _ := f.stats()
	if txns != 1 {
		t.Errorf("%d Txn calls, want 1", txns)
	}
	c.mustDo("-ERR EXEC without MULTI", "EXEC")
	c.mustDo("-ERR DISCARD without MULTI", "DISCARD")

	c.mustDo("+OK", "MULTI")
	c.mustDo("+QUEUED", "SET", "a", "100")
	c.mustDo("+OK", "DISCARD")
	c.mustDo(`"2"`, "GET", "a")

	c.mustDo("+OK", "MULTI")
	c.mustDo("[]", "EXEC")
}

// One failing command makes the whole block fail: it is one transaction.
func TestMultiIsAtomic(t *testing.T) {
	srv := startServer(t, newService(t), Options{})
	c := dial(t, srv)
	c.mustDo("+OK", "SET", "s", "text")
	c.mustDo("+OK", "MULTI")
	c.mustDo("+QUEUED", "SET", "x", "1")
	c.mustDo("+QUEUED", "INCR", "s")
	c.mustDo("-ERR value is not an integer or out of range", "EXEC")
	c.mustDo("nil", "GET", "x")
}

func TestMultiQueueErrors(t *testing.T) {
	srv := startServer(t, newService(t), Options{})
	c := dial(t, srv)
	for _, bad := range [][]string{
		{"NOSUCH"},
		{"GET"},
		{"SET", "a", "1", "NX"},
		{"SETNX", "a", "1"},
		{"EXPIRE", "a", "10", "GT"},
		{"KEYS", "*"},
		{"RAFT", "LEADER"},
	} {
		c.mustDo("+OK", "MULTI")
		c.mustDo("+QUEUED", "SET", "a", "1")
		if got := c.do(bad...); got == "+QUEUED" || got[0] != '-' {
			t.Errorf("%q queued: %s", bad, got)
		}
		c.mustDo("-EXECABORT Transaction discarded because of previous errors.", "EXEC")
		c.mustDo("nil", "GET", "a")
	}
	c.mustDo("+OK", "MULTI")
	c.mustDo("-ERR WATCH inside MULTI is not allowed", "WATCH", "a")
	c.mustDo("+QUEUED", "SET", "a", "1")
	c.mustDo("[+OK]", "EXEC")
}

func TestWatch(t *testing.T) {
	f := newSpy(newService(t))
	srv := startServer(t, f, Options{})
	c, other := dial(t, srv), dial(t, srv)

	// Unchanged watched keys (present and absent): EXEC runs.
	c.mustDo("+OK", "SET", "w", "1")
	c.mustDo("+OK", "WATCH", "w", "absent")
	c.mustDo("+OK", "MULTI")
	c.mustDo("+QUEUED", "INCR", "w")
	c.mustDo("[:2]", "EXEC")

	// A change by another client: EXEC answers a null array, nothing applies.
	c.mustDo("+OK", "WATCH", "w")
	other.mustDo(":3", "INCR", "w")
	c.mustDo("+OK", "MULTI")
	c.mustDo("+QUEUED", "SET", "w", "100")
	c.mustDo("*nil", "EXEC")
	c.mustDo(`"3"`, "GET", "w")

	// A key created after WATCH counts as changed.
	c.mustDo("+OK", "WATCH", "new")
	other.mustDo("+OK", "SET", "new", "x")
	c.mustDo("+OK", "MULTI")
	c.mustDo("+QUEUED", "GET", "new")
	c.mustDo("*nil", "EXEC")

	// EXEC forgets the watches; UNWATCH too.
	other.mustDo("+OK", "SET", "new", "y")
	c.mustDo("+OK", "MULTI")
	c.mustDo("+QUEUED", "GET", "new")
	c.mustDo(`["y"]`, "EXEC")
	c.mustDo("+OK", "WATCH", "w")
	c.mustDo("+OK", "UNWATCH")
	other.mustDo(":4", "INCR", "w")
	c.mustDo("+OK", "MULTI")
	c.mustDo("+QUEUED", "INCR", "w")
	c.mustDo("[:5]", "EXEC")

	// Watches become mod-revision compares of the one transaction.
	_, _, last := f.stats()
	if !reflect.DeepEqual(last[len(last)-1:], []string{"txn"}) {
		t.Errorf("calls %v", last)
	}
}
