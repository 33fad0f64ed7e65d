package model

import (
	"strings"
	"testing"
)

// watchRun is a small run: five acknowledged writes at revisions 11–15 of
// keys under "w/", and the end state they leave.
func watchRun() ([]*Op, []WatchEvent, map[string]Item) {
	ops := []*Op{
		{Kind: KindPut, Key: "w/a", Value: "1", Outcome: OK, ClusterRev: 11, Rev: 11},
		{Kind: KindPut, Key: "w/b", Value: "2", Outcome: OK, ClusterRev: 12, Rev: 12},
		{Kind: KindTxnPut, Key: "w/a", Value: "3", Outcome: OK, ClusterRev: 13, Rev: 13},
		{Kind: KindDelete, Key: "w/b", Outcome: OK, ClusterRev: 14, Deleted: 1},
		{Kind: KindRespSet, Key: "w/c", Value: "4", Outcome: OK}, // no revision answered
	}
	feed := []WatchEvent{
		{Rev: 11, Key: "w/a", Type: "put", Value: "1"},
		{Rev: 12, Key: "w/b", Type: "put", Value: "2"},
		{Rev: 13, Key: "w/a", Type: "put", Value: "3"},
		{Rev: 14, Key: "w/b", Type: "delete"},
		{Rev: 15, Key: "w/c", Type: "put", Value: "4"},
	}
	end := map[string]Item{
		"w/a":     {Key: "w/a", Value: []byte("3"), ModRevision: 13},
		"w/c":     {Key: "w/c", Value: []byte("4"), ModRevision: 15},
		"other/x": {Key: "other/x", Value: []byte("old"), ModRevision: 3},
	}
	return ops, feed, end
}

// goodStreams: watcher 0 reads everything in one stream; watcher 1 breaks
// after revision 12 and resumes from 13 on another node.
func goodStreams(feed []WatchEvent) []WatchStream {
	return []WatchStream{
		{Watcher: 0, Node: "n1", From: 11, Events: feed},
		{Watcher: 1, Node: "n2", From: 11, Events: feed[:2], Err: "EOF"},
		{Watcher: 1, Node: "n3", From: 13, Events: feed[2:]},
	}
}

func check(streams []WatchStream, ref []WatchEvent, ops []*Op, end map[string]Item) WatchResult {
	return CheckWatches(WatchCheck{Prefix: "w/", Streams: streams, Reference: ref, From: 11, Target: 15, Ops: ops, End: end})
}

func wantFailure(t *testing.T, res WatchResult, substr string) {
	t.Helper()
	for _, f := range res.Failures {
		if strings.Contains(f, substr) {
			return
		}
	}
	t.Fatalf("no failure containing %q; failures: %q", substr, res.Failures)
}

func TestWatchCheckPassesAFaithfulRun(t *testing.T) {
	ops, feed, end := watchRun()
	res := check(goodStreams(feed), feed, ops, end)
	if len(res.Failures) > 0 {
		t.Fatalf("failures: %q", res.Failures)
	}
	if res.Watchers != 2 || res.Streams != 3 || res.Resumed != 1 || res.Events != 10 {
		t.Fatalf("counted %+v", res)
	}
}

func TestWatchCheckCatchesWatchers(t *testing.T) {
	ops, feed, end := watchRun()
	drop := func(evs []WatchEvent, i int) []WatchEvent {
		return append(append([]WatchEvent(nil), evs[:i]...), evs[i+1:]...)
	}
	for _, tc := range []struct {
		name    string
		streams []WatchStream
		want    string
	}{
		{"a dropped live event", []WatchStream{{Watcher: 0, Node: "n1", From: 11, Events: drop(feed, 2)}},
			"missed revision 13 (@13 put w/a=3) before 14"},
		{"a dropped first event", []WatchStream{{Watcher: 0, Node: "n1", From: 11, Events: feed[1:]}},
			"missed revision 11"},
		{"an event the resumed stream skipped", []WatchStream{
			{Watcher: 0, Node: "n1", From: 11, Events: feed[:2], Err: "EOF"},
			{Watcher: 0, Node: "n2", From: 13, Events: feed[3:]}},
			"missed revision 13"},
		{"a resume that repeats", []WatchStream{
			{Watcher: 0, Node: "n1", From: 11, Events: feed[:2], Err: "EOF"},
			{Watcher: 0, Node: "n2", From: 12, Events: feed[1:]}},
			"revision 12 after 12"},
		{"a resume from the wrong revision", []WatchStream{
			{Watcher: 0, Node: "n1", From: 11, Events: feed[:2], Err: "EOF"},
			{Watcher: 0, Node: "n2", From: 14, Events: feed[3:]}},
			"resumed on n2 from 14, not from 13"},
		{"events out of order", []WatchStream{{Watcher: 0, Node: "n1", From: 11,
			Events: []WatchEvent{feed[0], feed[2], feed[1], feed[3], feed[4]}}},
			"revision 12 after 13"},
		{"a wrong value", []WatchStream{{Watcher: 0, Node: "n1", From: 11,
			Events: []WatchEvent{feed[0], feed[1], {Rev: 13, Key: "w/a", Type: "put", Value: "9"}, feed[3], feed[4]}}},
			"revision 13 is @13 put w/a=9, the reference feed has @13 put w/a=3"},
		{"an invented revision", []WatchStream{{Watcher: 0, Node: "n1", From: 11,
			Events: append(append([]WatchEvent(nil), feed...), WatchEvent{Rev: 16, Key: "w/d", Type: "delete"})}},
			"revision 16 (@16 delete w/d) is not in the reference feed"},
		{"a watcher that never caught up", []WatchStream{{Watcher: 0, Node: "n1", From: 11, Events: feed[:3]}},
			"stopped at revision 13; the replicas are at 15"},
		{"a watcher that saw nothing", []WatchStream{{Watcher: 0, Node: "n1", From: 11, Err: "connection refused"}},
			"stopped at revision 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantFailure(t, check(tc.streams, feed, ops, end), tc.want)
		})
	}
}

func TestWatchCheckCatchesTheReference(t *testing.T) {
	ops, feed, end := watchRun()
	for _, tc := range []struct {
		name string
		ref  []WatchEvent
		want string
	}{
		{"an acknowledged write missing", append(append([]WatchEvent(nil), feed[:2]...), feed[3:]...),
			"revision 13 in the reference feed is nothing, not the acknowledged"},
		{"an acknowledged delete missing", append(append([]WatchEvent(nil), feed[:3]...), feed[4:]...),
			"revision 14 in the reference feed is nothing, not the acknowledged"},
		{"a value no client wrote", append(append([]WatchEvent(nil), feed[:4]...), WatchEvent{Rev: 15, Key: "w/c", Type: "put", Value: "5"}),
			"a value no client wrote to w/c"},
		{"an unacknowledged change missing", feed[:4],
			"the replicas hold w/c=4 @15, a change the reference feed does not have"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The watchers agree with the reference: only the history can
			// tell it is wrong.
			streams := []WatchStream{{Watcher: 0, Node: "n1", From: 11, Events: tc.ref}}
			res := CheckWatches(WatchCheck{Prefix: "w/", Streams: streams, Reference: tc.ref, From: 11, Target: tc.ref[len(tc.ref)-1].Rev, Ops: ops, End: end})
			wantFailure(t, res, tc.want)
		})
	}
	t.Run("an end state the feed does not end with", func(t *testing.T) {
		bad := map[string]Item{"w/a": {Key: "w/a", Value: []byte("1"), ModRevision: 11}, "w/c": end["w/c"], "w/b": {Key: "w/b", Value: []byte("2"), ModRevision: 12}}
		res := check(goodStreams(feed), feed, ops, bad)
		wantFailure(t, res, "ends w/a with @13 put w/a=3, the replicas hold w/a=1 @11")
		wantFailure(t, res, "ends w/b with @14 delete w/b, the replicas hold it @12")
	})
}

func TestWatchCheckCompactionAndNoReference(t *testing.T) {
	ops, feed, end := watchRun()
	// A watcher whose resume was compacted starts again from now: the
	// revisions it missed meanwhile are not held against it.
	streams := []WatchStream{
		{Watcher: 0, Node: "n1", From: 11, Events: feed[:1], Err: "EOF"},
		{Watcher: 0, Node: "n2", From: 12, Compacted: true, Err: "410"},
		{Watcher: 0, Node: "n2", From: 0, Events: feed[3:]},
	}
	res := check(streams, feed, ops, end)
	if len(res.Failures) > 0 || len(res.Notes) != 1 {
		t.Fatalf("failures %q, notes %q", res.Failures, res.Notes)
	}
	// Without a reference, watchers that disagree, or that miss an
	// acknowledged write they should have seen, still fail.
	noRef := func(streams []WatchStream) WatchResult {
		return CheckWatches(WatchCheck{Prefix: "w/", Streams: streams, ReferenceErr: "test", From: 11, Target: 15, Ops: ops, End: end})
	}
	if res := noRef(goodStreams(feed)); len(res.Failures) > 0 {
		t.Fatalf("failures: %q", res.Failures)
	}
	other := append([]WatchEvent(nil), feed...)
	other[2].Value = "9"
	wantFailure(t, noRef([]WatchStream{{Watcher: 0, Node: "n1", From: 11, Events: feed}, {Watcher: 1, Node: "n2", From: 11, Events: other}}),
		"watch 1: on n2: revision 13 is @13 put w/a=9")
	wantFailure(t, noRef([]WatchStream{{Watcher: 0, Node: "n1", From: 11, Events: other}}),
		"watch 0: revision 13 is @13 put w/a=9, not the acknowledged")
}

// A run longer than the history: the reference starts at the oldest
// revision kept, and before it the watchers are held to the acknowledged
// writes and to each other.
func TestWatchCheckReferenceFromTheOldestKept(t *testing.T) {
	ops, feed, end := watchRun()
	late := func(streams []WatchStream) WatchResult {
		return CheckWatches(WatchCheck{Prefix: "w/", Streams: streams, Reference: feed[2:], ReferenceFrom: 13, From: 11, Target: 15, Ops: ops, End: end})
	}
	res := late(goodStreams(feed))
	if len(res.Failures) > 0 || len(res.Notes) != 1 {
		t.Fatalf("failures %q, notes %q", res.Failures, res.Notes)
	}
	wantFailure(t, late([]WatchStream{{Watcher: 0, Node: "n1", From: 11, Events: feed[1:]}}),
		"watch 0: revision 11 is nothing, not the acknowledged put(w/a, 1)")
	wantFailure(t, late([]WatchStream{{Watcher: 0, Node: "n1", From: 11, Events: append([]WatchEvent{feed[0]}, feed[2:]...)}}),
		"watch 0: revision 12 is nothing, not the acknowledged put(w/b, 2)")
	wantFailure(t, late([]WatchStream{{Watcher: 0, Node: "n1", From: 11, Events: append([]WatchEvent{feed[0]}, feed[3:]...)}}),
		"missed revision 13")
}
