package respapi

import (
	"strings"
	"testing"

	"github.com/cairnkv/cairn/internal/kvtest"
)

// Keys of an eventual keyspace, served by kvtest's stand-in for the
// eventual engine behind a real service: what they support answers as on a
// strong key; what needs agreement is refused with the service's message,
// which says why, and changes nothing.
func TestEventualKeys(t *testing.T) {
	svc := newService(t, kvtest.Eventual(&kvtest.FakeEventual{}))
	kvtest.MustEventualKeyspace(t, svc, "ev/")
	c := dial(t, startServer(t, svc, Options{}))

	c.mustDo("+OK", "SET", "ev/a", "1", "EX", "100")
	c.mustDo(`"1"`, "GET", "ev/a")
	c.mustDo(":100", "TTL", "ev/a")
	c.mustDo(":1", "EXPIRE", "ev/a", "200")
	c.mustDo(":200", "TTL", "ev/a")
	c.mustDo(":1", "PERSIST", "ev/a")
	c.mustDo(":-1", "TTL", "ev/a")
	c.mustDo(":1", "EXPIRE", "ev/a", "-1")
	c.mustDo(":-2", "TTL", "ev/a")
	c.mustDo("+OK", "SET", "ev/a", "1")
	c.mustDo(":1", "EXISTS", "ev/a")
	c.mustDo("+string", "TYPE", "ev/a")
	c.mustDo(":1", "STRLEN", "ev/a")

	for _, cmd := range [][]string{
		{"SET", "ev/a", "2", "NX"},
		{"SET", "ev/a", "2", "XX"},
		{"SET", "ev/a", "2", "GET"},
		{"INCR", "ev/a"},
		{"APPEND", "ev/a", "x"},
		{"GETSET", "ev/a", "x"},
		{"RENAME", "ev/a", "ev/b"},
		{"WATCH", "ev/a"},
		{"WATCH", "ev/absent"},
		{"WATCH", "strong", "ev/a"},
	} {
		got := c.do(cmd...)
		if !strings.HasPrefix(got, "-ERR keyspace mode not supported: ") || !strings.Contains(got, "eventual") {
			t.Errorf("%q: %s, want -ERR with the service's message naming the keyspace as eventual", cmd, got)
		}
	}
	c.mustDo(`"1"`, "GET", "ev/a")
	c.mustDo("nil", "GET", "ev/b")

	// A refused WATCH watches nothing: the block runs.
	c.mustDo("+OK", "MULTI")
	c.mustDo("+QUEUED", "SET", "strong", "x")
	c.mustDo("[+OK]", "EXEC")
	// WATCH on strong keys works as before.
	c.mustDo("+OK", "WATCH", "strong")
	c.mustDo("+OK", "MULTI")
	c.mustDo("+QUEUED", "SET", "strong", "y")
	c.mustDo("[+OK]", "EXEC")
	c.mustDo(`"y"`, "GET", "strong")
}
