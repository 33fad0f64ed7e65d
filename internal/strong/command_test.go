package strong

import (
	"reflect"
	"testing"
	"time"

	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

func sampleTxn() kv.Txn {
	return kv.Txn{
		Compare: []kv.Compare{{Key: "a", Target: kv.TargetModRevision, Op: "=", Number: 7}, {Key: "b", Target: kv.TargetExists, Op: "!=", Exists: true}, {Key: "c", Target: kv.TargetValue, Op: "<", Value: []byte("v")}},
		Success: []kv.Op{{Type: kv.OpPut, Key: "a", Value: []byte("x"), TTL: time.Second, KeepTTL: true, ReturnPrev: true}, {Type: kv.OpRename, Key: "a", Value: []byte("z")}},
		Failure: []kv.Op{{Type: kv.OpGet, Key: "a"}, {Type: kv.OpPut, Key: "p", ExpiresAt: 12345}},
	}
}

func TestCommandRoundTrip(t *testing.T) {
	tx := sampleTxn()
	cases := []command{
		{Type: cmdTxn, Txn: &tx},
		{Type: cmdBatch, Batch: []kv.Txn{tx, {Success: []kv.Op{{Type: kv.OpDelete, Key: "q"}}}}},
		{Type: cmdExpire, Expire: []expireItem{{Key: "k", ModRevision: 3}, {Key: "j", ModRevision: 9}}},
		{Type: cmdMemberSet, Member: &kv.Member{Name: "n1", PeerAddr: "127.0.0.1:1", ClientURL: "http://x"}},
		{Type: cmdMemberDel, Name: "n2"},
		{Type: cmdAuth, Auth: &kv.AuthChange{Op: kv.AuthUserDel, User: "bob"}},
		{Type: cmdKeyspaceSet, Keyspace: &keyspace.Policy{Prefix: "certs/", Mode: keyspace.Eventual, Replicas: 3, WriteQuorum: 2, DefaultTTL: time.Minute}},
		{Type: cmdKeyspaceDel, Name: "certs/"},
		{Type: cmdMirrorCursor, Name: "files/", Revision: 42},
	}
	for _, c := range cases {
		b, err := encodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeCommand(b)
		if err != nil {
			t.Fatalf("%s: %v", c.Type, err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(c)) {
			t.Fatalf("%s round trip:\n got %+v\nwant %+v", c.Type, got, c)
		}
		// Every truncation is an error, never a panic.
		for i := 0; i < len(b); i++ {
			if _, err := decodeCommand(b[:i]); err == nil {
				t.Fatalf("%s truncated to %d bytes decoded", c.Type, i)
			}
		}
	}
	if _, err := encodeCommand(command{Type: cmdTxn, Txn: &kv.Txn{Success: []kv.Op{{Type: "bogus"}}}}); err == nil {
		t.Fatal("unknown op encoded")
	}
}

// normalize maps empty slices to nil so DeepEqual compares content.
func normalize(c command) command {
	fix := func(t *kv.Txn) {
		for i := range t.Compare {
			if len(t.Compare[i].Value) == 0 {
				t.Compare[i].Value = nil
			}
		}
		for _, ops := range [][]kv.Op{t.Success, t.Failure} {
			for i := range ops {
				if len(ops[i].Value) == 0 {
					ops[i].Value = nil
				}
			}
		}
	}
	if c.Txn != nil {
		cp := *c.Txn
		fix(&cp)
		c.Txn = &cp
	}
	for i := range c.Batch {
		fix(&c.Batch[i])
	}
	return c
}

func TestResultRoundTrip(t *testing.T) {
	r := result{Txn: &kv.TxnResult{Succeeded: true, Revision: 42, Results: []kv.OpResult{
		{Type: kv.OpPut, Key: "a", Record: &kv.Record{Key: "a", ModRevision: 42, CreateRevision: 1, Version: 3}},
		{Type: kv.OpDelete, Key: "b", Deleted: 1, Prev: &kv.Record{Key: "b", Value: []byte("old")}},
		{Type: kv.OpGet, Key: "c"},
	}}}
	got, err := decodeResultBytes(encodeResult(r))
	if err != nil {
		t.Fatal(err)
	}
	if got.Txn.Revision != 42 || !got.Txn.Succeeded || got.Txn.Results[0].Record.Version != 3 ||
		string(got.Txn.Results[1].Prev.Value) != "old" || got.Txn.Results[2].Record != nil {
		t.Fatalf("round trip: %+v", got.Txn)
	}
	e, err := decodeResult(encodeResult(result{Code: "not_integer", Msg: "x"}))
	if e != nil || err == nil {
		t.Fatalf("error result: %v %v", e, err)
	}
	// A control command's result carries its log index, after the rest.
	if got, err := decodeResultBytes(encodeResult(result{Index: 1 << 40})); err != nil || got.Index != 1<<40 {
		t.Fatalf("index result: %+v %v", got, err)
	}
	if _, err := decodeResultBytes(append(encodeResult(result{Index: 7}), 0)); err == nil {
		t.Fatal("bytes after the index decode")
	}
}

func FuzzDecodeCommand(f *testing.F) {
	tx := sampleTxn()
	for _, c := range []command{{Type: cmdTxn, Txn: &tx}, {Type: cmdBatch, Batch: []kv.Txn{tx}}, {Type: cmdExpire, Expire: []expireItem{{Key: "k"}}}} {
		b, _ := encodeCommand(c)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCommand(b)
		if err != nil {
			return
		}
		// Whatever decodes must encode again.
		if _, err := encodeCommand(c); err != nil && c.Type != cmdMemberSet {
			t.Fatalf("decoded command does not encode: %v", err)
		}
	})
}

func FuzzDecodeResult(f *testing.F) {
	f.Add(encodeResult(result{Txn: &kv.TxnResult{Results: []kv.OpResult{{Type: kv.OpGet, Record: &kv.Record{Value: []byte("v")}}}}}))
	f.Add(encodeResult(result{Code: "x", Msg: "y"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeResultBytes(b)
	})
}
