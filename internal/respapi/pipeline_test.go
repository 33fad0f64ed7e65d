package respapi

import (
	"bytes"
	"fmt"
	"github.com/cairnkv/cairn/kv"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/kvtest"
)

// pipeline sends all frames in one write and reads one reply per frame.
func pipeline(c *testClient, cmds ...[]string) []string {
	c.t.Helper()
	var b bytes.Buffer
	for _, cmd := range cmds {
		b.Write(encode(cmd...))
	}
	c.send(b.Bytes())
	out := make([]string, len(cmds))
	for i := range cmds {
		out[i] = c.read()
	}
	return out
}

func TestPipelinedWritesShareOneBatch(t *testing.T) {
	f := newSpy(newService(t))
	srv := startServer(t, f, Options{})
	c := dial(t, srv)
	var cmds [][]string
	for i := 0; i < 100; i++ {
		cmds = append(cmds, []string{"SET", fmt.Sprintf("k%d", i), fmt.Sprint(i)})
	}
	for _, r := range pipeline(c, cmds...) {
		if r != "+OK" {
			t.Fatalf("reply %s", r)
		}
	}
	batches, _, _ := f.stats()
	if !reflect.DeepEqual(batches, []int{100}) {
		t.Errorf("batches %v, want one of 100", batches)
	}
	f.resetStats()
	cmds = cmds[:0]
	for i := 0; i < 100; i++ {
		cmds = append(cmds, []string{"GET", fmt.Sprintf("k%d", i)})
	}
	for i, r := range pipeline(c, cmds...) {
		if r != fmt.Sprintf("%q", fmt.Sprint(i)) {
			t.Fatalf("GET k%d = %s", i, r)
		}
	}
	// One linearizable read for the group; the rest are served locally.
	reads := f.readOptions()
	if len(reads) != 100 || reads[0].Serializable {
		t.Fatalf("reads %v", reads)
	}
	for _, o := range reads[1:] {
		if !o.Serializable {
			t.Fatalf("a later read of the group was linearizable again: %v", reads)
		}
	}
}

func TestPipelineKeepsOrder(t *testing.T) {
	f := newSpy(newService(t))
	srv := startServer(t, f, Options{})
	c := dial(t, srv)
	got := pipeline(c,
		[]string{"SET", "a", "1"},
		[]string{"INCR", "a"},
		[]string{"PING"},
		[]string{"GET", "a"},
		[]string{"SET", "a", "5"},
		[]string{"BOGUS"},
		[]string{"INCRBY", "a", "x"},
		[]string{"INCR", "a"},
		[]string{"GET", "a"},
		[]string{"DEL", "a"},
	)
	want := []string{"+OK", ":2", "+PONG", `"2"`, "+OK",
		"-ERR unknown command 'BOGUS', with args beginning with: ", "-ERR value is not an integer or out of range",
		":6", `"6"`, ":1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("replies\n got %q\nwant %q", got, want)
	}
	_, _, calls := f.stats()
	// SET+INCR in one batch, then the GET, then SET+INCR, then the GET, then DEL.
	wantCalls := []string{"batch", "get", "batch", "get", "batch"}
	if !reflect.DeepEqual(calls, wantCalls) {
		t.Errorf("calls %v, want %v", calls, wantCalls)
	}
	batches, _, _ := f.stats()
	if !reflect.DeepEqual(batches, []int{2, 2, 1}) {
		t.Errorf("batches %v", batches)
	}
}

// A write that fails in the batch fails alone.
func TestBatchErrorsAreIndependent(t *testing.T) {
	srv := startServer(t, newService(t), Options{})
	c := dial(t, srv)
	got := pipeline(c,
		[]string{"SET", "s", "text"},
		[]string{"INCR", "s"},
		[]string{"SET", "", "x"},
		[]string{"INCR", "n"},
	)
	want := []string{"+OK", "-ERR value is not an integer or out of range", "-ERR invalid key: empty key", ":1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("replies %q, want %q", got, want)
	}
}

func TestReadonlyReadsAreSerializable(t *testing.T) {
	f := newSpy(newService(t))
	srv := startServer(t, f, Options{})
	c := dial(t, srv)
	c.mustDo("+OK", "READONLY")
	c.mustDo("nil", "GET", "a")
	c.mustDo("+OK", "READWRITE")
	c.mustDo("nil", "GET", "a")
	if reads := f.readOptions(); len(reads) != 2 || !reads[0].Serializable || reads[1].Serializable {
		t.Errorf("reads %v", reads)
	}
}

func TestClientReadmode(t *testing.T) {
	f := newSpy(newService(t))
	srv := startServer(t, f, Options{})
	c := dial(t, srv)
	c.mustDo("nil", "GET", "a")
	c.mustDo("+OK", "CLIENT", "READMODE", "lease")
	c.mustDo("nil", "GET", "a")
	c.mustDo("+OK", "CLIENT", "READMODE", "READ-INDEX")
	c.mustDo("nil", "GET", "a")
	c.mustDo("-ERR CLIENT READMODE takes lease, read-index or default, not 'fast'", "CLIENT", "READMODE", "fast")
	c.mustDo("+OK", "CLIENT", "READMODE", "default")
	c.mustDo("nil", "GET", "a")
	want := []kv.ReadMode{kv.ReadModeDefault, kv.ReadModeLease, kv.ReadModeReadIndex, kv.ReadModeDefault}
	reads := f.readOptions()
	if len(reads) != len(want) {
		t.Fatalf("reads %v", reads)
	}
	for i, r := range reads {
		if r.ReadMode != want[i] || r.Serializable {
			t.Errorf("read %d: %+v, want mode %v", i, r, want[i])
		}
	}
}

// A big pipeline is answered in parts instead of being held whole.
func TestLongPipelineIsFlushedInParts(t *testing.T) {
	f := newSpy(newService(t))
	srv := startServer(t, f, Options{})
	c := dial(t, srv)
	var b bytes.Buffer
	const n = 5000
	for i := 0; i < n; i++ {
		b.Write(encode("SET", fmt.Sprintf("k%d", i), "v"))
	}
	go func() { _, _ = c.nc.Write(b.Bytes()) }()
	for i := 0; i < n; i++ {
		if r := c.read(); r != "+OK" {
			t.Fatalf("reply %d: %s", i, r)
		}
	}
	batches, _, _ := f.stats()
	for _, size := range batches {
		if size > maxPendingWrites {
			t.Errorf("batch of %d writes", size)
		}
	}
}

func TestCloseEndsConnections(t *testing.T) {
	srv := startServer(t, newService(t), Options{})
	c := dial(t, srv)
	c.mustDo("+PONG", "PING")
	done := make(chan error, 1)
	go func() { done <- srv.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs")
	}
	if !c.closed() {
		t.Error("connection open after Close")
	}
}

func TestValueLimit(t *testing.T) {
	srv := startServer(t, newService(t), Options{MaxValueBytes: 1000})
	c := dial(t, srv)
	// Past the limit plus slack: the frame itself is refused and the connection closed.
	c.send([]byte(fmt.Sprintf("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n", 1000+bulkSlack+1)))
	if got := c.read(); got != "-ERR Protocol error: invalid bulk length" {
		t.Errorf("reply %s", got)
	}
	if !c.closed() {
		t.Error("connection open after a protocol error")
	}
	// Within the slack, the service's own limit answers (here its default 1 MiB).
	c = dial(t, srv)
	c.mustDo("+OK", "SET", "k", strings.Repeat("x", 1000+bulkSlack))
	// A service whose limit is below the front end's refuses the value itself.
	srv = startServer(t, newService(t, kvtest.MaxValueBytes(100)), Options{MaxValueBytes: 1000})
	c = dial(t, srv)
	c.mustDo("-ERR value too large: 101 bytes, the limit is 100", "SET", "k", strings.Repeat("x", 101))
	c.mustDo("+OK", "SET", "k", strings.Repeat("x", 100))
}
