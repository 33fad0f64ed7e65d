package strong

import "testing"

// A mirror cursor only moves forward, within a batch and across batches,
// and each prefix has its own.
func TestMirrorCursorMovesForward(t *testing.T) {
	m, _ := mustMachine(t)
	e := &Engine{machine: m}
	cursor := func(prefix string) int64 {
		t.Helper()
		c, err := e.MirrorCursor(prefix)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := cursor("files/"); c != 0 {
		t.Fatalf("a prefix never mirrored has cursor %d", c)
	}
	cur := func(prefix string, rev int64) command {
		return command{Type: cmdMirrorCursor, Name: prefix, Revision: rev}
	}
	applyCommands(t, m, 1, cur("files/", 5), cur("files/", 9), cur("files/", 7), cur("ev/", 3))
	if c, d := cursor("files/"), cursor("ev/"); c != 9 || d != 3 {
		t.Fatalf("cursors after one batch: files/ %d ev/ %d, want 9 and 3", c, d)
	}
	applyCommands(t, m, 5, cur("files/", 8))
	if c := cursor("files/"); c != 9 {
		t.Fatalf("a cursor moved back to %d", c)
	}
	if errs := applyCommands(t, m, 6, cur("files/", -1)); errs[0] == nil {
		t.Fatal("a negative cursor was applied")
	}
}
