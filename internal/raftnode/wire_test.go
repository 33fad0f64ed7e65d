//lint:file-ignore SA1019 the wire format carries every field Raft v1.8.0 sets, its deprecated Leader and Candidate too

package raftnode

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func testHeader() raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n1"), Addr: []byte("127.0.0.1:7701")}
}

// mustFrame encodes cmd as a request frame and reads it back as readFrame does.
func mustFrame(t testing.TB, cmd any) (byte, []byte) {
	t.Helper()
	body, typ, err := appendRequest(nil, cmd, nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	if err := writeFrame(w, typ, body, nil); err != nil {
		t.Fatal(err)
	}
	_ = w.Flush()
	rtyp, rbody, err := readFrame(bufio.NewReader(&buf))
	if err != nil || rtyp != typ || !bytes.Equal(rbody, body) {
		t.Fatalf("frame: type %d/%d, err %v", rtyp, typ, err)
	}
	return typ, rbody
}

// spilledFrame encodes cmd as the transport sends it, large Data spilled.
func spilledFrame(t testing.TB, cmd any) []byte {
	t.Helper()
	var spills []spill
	body, typ, err := appendRequest(nil, cmd, &spills)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := bufio.NewWriterSize(&buf, 4096)
	if err := writeFrame(w, typ, body, spills); err != nil {
		t.Fatal(err)
	}
	_ = w.Flush()
	return buf.Bytes()
}

// sameRequest compares a decoded request with the one sent.
func sameRequest(t *testing.T, got, req any) {
	t.Helper()
	if ae, ok := req.(*raft.AppendEntriesRequest); ok {
		gae, ok := got.(*raft.AppendEntriesRequest)
		if !ok {
			t.Fatalf("got %T", got)
		}
		sameLogs(t, gae.Entries, ae.Entries)
		a, b := *gae, *ae
		a.Entries, b.Entries = nil, nil
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("got %+v, want %+v", a, b)
		}
		return
	}
	if !reflect.DeepEqual(got, req) {
		t.Fatalf("got %+v, want %+v", got, req)
	}
}

// sameLogs compares entries; AppendedAt by instant (the location is not sent).
func sameLogs(t *testing.T, got, want []*raft.Log) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := *got[i], *want[i]
		if !g.AppendedAt.Equal(w.AppendedAt) || g.AppendedAt.IsZero() != w.AppendedAt.IsZero() {
			t.Fatalf("entry %d AppendedAt %v, want %v", i, g.AppendedAt, w.AppendedAt)
		}
		g.AppendedAt, w.AppendedAt = time.Time{}, time.Time{}
		if !bytes.Equal(g.Data, w.Data) || (g.Data == nil) != (w.Data == nil) {
			t.Fatalf("entry %d: %d bytes of data (nil %v), want %d (nil %v), or they differ", i, len(g.Data), g.Data == nil, len(w.Data), w.Data == nil)
		}
		g.Data, w.Data = nil, nil
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("entry %d: %+v, want %+v", i, g, w)
		}
	}
}

func TestWireRequestsRoundTrip(t *testing.T) {
	large := bytes.Repeat([]byte{0xab}, 300<<10) // over sharedFrameMax: copied entries
	var all []*raft.Log
	for typ := raft.LogCommand; typ <= raft.LogConfiguration; typ++ {
		all = append(all, &raft.Log{Index: uint64(typ) + 1, Term: 7, Type: typ, Data: []byte{byte(typ)}})
	}
	cases := map[string]any{
		"append, no entries":     &raft.AppendEntriesRequest{RPCHeader: testHeader(), Term: 3, Leader: []byte("n1"), PrevLogEntry: 9, PrevLogTerm: 2, LeaderCommitIndex: 8},
		"append, nil entries":    &raft.AppendEntriesRequest{},
		"append, every log type": &raft.AppendEntriesRequest{RPCHeader: testHeader(), Term: 7, Entries: all},
		"append, nil and empty data": &raft.AppendEntriesRequest{Term: 1, Entries: []*raft.Log{
			{Index: 1, Term: 1, Data: nil, Extensions: nil},
			{Index: 2, Term: 1, Data: []byte{}, Extensions: []byte{}},
			{Index: 1 << 62, Term: 1<<64 - 1, Data: []byte("x"), Extensions: []byte("ext"), AppendedAt: time.Unix(1700000000, 123456789)},
			{Index: 4, AppendedAt: time.Unix(-5, 1).In(time.FixedZone("x", 3600))},
		}},
		"append, large data": &raft.AppendEntriesRequest{Term: 2, Entries: []*raft.Log{
			{Index: 1, Term: 2, Data: large}, {Index: 2, Term: 2, Data: []byte("small")},
		}},
		"append, spilled and inline data": &raft.AppendEntriesRequest{RPCHeader: testHeader(), Term: 2, LeaderCommitIndex: 3, Entries: []*raft.Log{
			{Index: 1, Term: 2, Data: large[:inlineDataMax], Extensions: []byte("e")},
			{Index: 2, Term: 2, Data: large[:inlineDataMax+1], AppendedAt: time.Unix(1700000000, 1)},
			{Index: 3, Term: 2, Data: large[:100<<10]},
			{Index: 4, Term: 2, Data: large[:sharedFrameMax]},
		}},
		"vote":              &raft.RequestVoteRequest{RPCHeader: testHeader(), Term: 4, Candidate: []byte("n2"), LastLogIndex: 10, LastLogTerm: 3, LeadershipTransfer: true},
		"vote, zero":        &raft.RequestVoteRequest{},
		"prevote":           &raft.RequestPreVoteRequest{RPCHeader: testHeader(), Term: 5, LastLogIndex: 11, LastLogTerm: 4},
		"snapshot":          &raft.InstallSnapshotRequest{RPCHeader: testHeader(), SnapshotVersion: 1, Term: 6, Leader: []byte("n1"), LastLogIndex: 100, LastLogTerm: 5, Peers: []byte{}, Configuration: []byte("conf"), ConfigurationIndex: 90, Size: 5 << 20},
		"timeout now":       &raft.TimeoutNowRequest{RPCHeader: testHeader()},
		"timeout now, zero": &raft.TimeoutNowRequest{},
	}
	for name, req := range cases {
		t.Run(name, func(t *testing.T) {
			typ, body := mustFrame(t, req)
			got, err := decodeRequest(typ, body)
			if err != nil {
				t.Fatal(err)
			}
			sameRequest(t, got, req)
			// As the transport sends and reads it: large Data spilled, a
			// large body decoded as it arrives.
			frame := spilledFrame(t, req)
			r := bufio.NewReaderSize(bytes.NewReader(frame), 16)
			rtyp, got, err := readRequest(r)
			if err != nil || rtyp != typ {
				t.Fatalf("readRequest: type %d/%d, %v", rtyp, typ, err)
			}
			sameRequest(t, got, req)
			if _, err := r.ReadByte(); err != io.EOF {
				t.Fatalf("readRequest left bytes of its frame: %v", err)
			}
			if typ == wireAppendEntries {
				got, err := streamAppendEntries(bufio.NewReaderSize(bytes.NewReader(body), 16), uint64(len(body)))
				if err != nil {
					t.Fatal(err)
				}
				sameRequest(t, got, req)
			}
		})
	}
}

// Small AppendEntries point into the frame; large ones own their Data.
func TestWireAppendEntriesSharing(t *testing.T) {
	for _, size := range []int{16, sharedFrameMax + 1} {
		req := &raft.AppendEntriesRequest{Entries: []*raft.Log{{Index: 1, Data: make([]byte, size)}}}
		typ, body := mustFrame(t, req)
		got, err := decodeRequest(typ, body)
		if err != nil {
			t.Fatal(err)
		}
		d := got.(*raft.AppendEntriesRequest).Entries[0].Data
		inFrame := &d[0] == &body[len(body)-size-2] // then Extensions and AppendedAt, a byte each
		if inFrame != (size <= sharedFrameMax) {
			t.Fatalf("size %d: data in the frame %v", size, inFrame)
		}
		if cap(d) != len(d) {
			t.Fatalf("size %d: cap %d > len %d: an append would write over the frame", size, cap(d), len(d))
		}
	}
}

// An AppendEntries of many entries decodes in a constant number of
// allocations: the request, one slice of Logs, one of pointers.
func TestWireAppendEntriesAllocs(t *testing.T) {
	req := &raft.AppendEntriesRequest{RPCHeader: testHeader(), Term: 2, Leader: []byte("n1")}
	for i := 1; i <= 64; i++ {
		req.Entries = append(req.Entries, &raft.Log{Index: uint64(i), Term: 2, Data: make([]byte, 256), AppendedAt: time.Unix(1700000000, 5)})
	}
	typ, body := mustFrame(t, req)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := decodeRequest(typ, body); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 4 {
		t.Fatalf("decoding 64 entries: %.0f allocations, want at most 4", allocs)
	}
}

func TestWireResponsesRoundTrip(t *testing.T) {
	cases := []struct {
		typ  byte
		resp any
		err  error
	}{
		{wireAppendEntries, &raft.AppendEntriesResponse{RPCHeader: testHeader(), Term: 3, LastLog: 99, Success: true, NoRetryBackoff: true}, nil},
		{wireAppendEntries, &raft.AppendEntriesResponse{}, errors.New("remote failure")},
		{wireRequestVote, &raft.RequestVoteResponse{RPCHeader: testHeader(), Term: 4, Peers: []byte("p"), Granted: true}, nil},
		{wireRequestPreVote, &raft.RequestPreVoteResponse{RPCHeader: testHeader(), Term: 5, Granted: true}, nil},
		{wireInstallSnapshot, &raft.InstallSnapshotResponse{RPCHeader: testHeader(), Term: 6, Success: true}, nil},
		{wireTimeoutNow, &raft.TimeoutNowResponse{RPCHeader: testHeader()}, nil},
		{wireTimeoutNow, nil, errStaleTimeoutNow}, // Raft may answer nil with an error
	}
	for i, c := range cases {
		body, err := appendResponse(nil, c.typ, c.resp, c.err)
		if err != nil {
			t.Fatal(err)
		}
		want := c.resp
		if want == nil {
			want = &raft.TimeoutNowResponse{}
		}
		got := reflect.New(reflect.TypeOf(want).Elem()).Interface()
		msg, err := decodeResponse(c.typ, body, got)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if wantMsg := ""; c.err != nil && msg != c.err.Error() || c.err == nil && msg != wantMsg {
			t.Fatalf("case %d: remote error %q, want %v", i, msg, c.err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("case %d: got %+v, want %+v", i, got, want)
		}
		// The wrong response type for the frame is an error, not a misparse.
		if _, err := decodeResponse(c.typ%5+1, body, got); !errors.Is(err, errBadFrame) {
			t.Fatalf("case %d: a mismatched response type: %v", i, err)
		}
	}
}

func TestWireRejectsMalformed(t *testing.T) {
	_, good := mustFrame(t, &raft.AppendEntriesRequest{Term: 1, Entries: []*raft.Log{{Index: 1, Data: []byte("abc")}}})
	for cut := 0; cut < len(good); cut++ {
		if _, err := decodeRequest(wireAppendEntries, good[:cut]); !errors.Is(err, errBadFrame) {
			t.Fatalf("cut at %d: %v, want errBadFrame", cut, err)
		}
	}
	if _, err := decodeRequest(wireAppendEntries, append(good, 0)); !errors.Is(err, errBadFrame) {
		t.Fatalf("trailing byte: %v", err)
	}
	// A count of entries far beyond the body.
	lying := []byte{0, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}
	if _, err := decodeRequest(wireAppendEntries, lying); !errors.Is(err, errBadFrame) {
		t.Fatalf("lying count: %v", err)
	}
	if _, err := decodeRequest(99, nil); !errors.Is(err, errUnknownRPC) {
		t.Fatalf("unknown type: %v", err)
	}
	// The same, decoded as it arrives: every cut is an error, a short
	// stream's too.
	for cut := 0; cut < len(good); cut++ {
		if _, err := streamAppendEntries(bufio.NewReader(bytes.NewReader(good[:cut])), uint64(cut)); !errors.Is(err, errBadFrame) {
			t.Fatalf("stream cut at %d: %v, want errBadFrame", cut, err)
		}
		if _, err := streamAppendEntries(bufio.NewReader(bytes.NewReader(good[:cut])), uint64(len(good))); !errors.Is(err, errBadFrame) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("stream ending at %d: %v, want errBadFrame or ErrUnexpectedEOF", cut, err)
		}
	}
	if _, err := streamAppendEntries(bufio.NewReader(bytes.NewReader(append(good, 0))), uint64(len(good)+1)); !errors.Is(err, errBadFrame) {
		t.Fatalf("stream trailing byte: %v", err)
	}
	if _, err := streamAppendEntries(bufio.NewReader(bytes.NewReader(lying)), uint64(len(lying))); !errors.Is(err, errBadFrame) {
		t.Fatalf("stream lying count: %v", err)
	}
	// A frame length over maxFrame is refused before anything is read.
	hdr := []byte{wireAppendEntries, 0xff, 0xff, 0xff, 0xff, 0x0f}
	if _, _, err := readFrame(bufio.NewReader(bytes.NewReader(hdr))); !errors.Is(err, errFrameTooLarge) {
		t.Fatalf("huge frame: %v", err)
	}
}

// FuzzDecodeFrame feeds arbitrary bytes to the frame reader and every
// decoder: they must fail cleanly, and allocate at most a small multiple of
// the input (a Log struct and its pointer per minLogBytes of frame, the
// frame itself and a little more).
func FuzzDecodeFrame(f *testing.F) {
	for _, cmd := range []any{
		&raft.AppendEntriesRequest{RPCHeader: testHeader(), Term: 2, Entries: []*raft.Log{{Index: 1, Data: []byte("x"), AppendedAt: time.Unix(1, 2)}, {Index: 2}}},
		&raft.RequestVoteRequest{RPCHeader: testHeader(), Term: 1},
		&raft.RequestPreVoteRequest{Term: 1},
		&raft.InstallSnapshotRequest{Term: 1, Size: 10},
		&raft.TimeoutNowRequest{},
	} {
		body, typ, _ := appendRequest(nil, cmd, nil)
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		_ = writeFrame(w, typ, body, nil)
		_ = w.Flush()
		f.Add(buf.Bytes())
	}
	f.Add([]byte{wireAppendEntries, 0xff, 0xff, 0xff, 0xff, 0x0f})
	resps := []any{&raft.AppendEntriesResponse{}, &raft.RequestVoteResponse{}, &raft.RequestPreVoteResponse{}, &raft.InstallSnapshotResponse{}, &raft.TimeoutNowResponse{}}
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		typ, body, err := readFrame(bufio.NewReader(bytes.NewReader(data)))
		if err == nil {
			for _, typ := range []byte{typ, wireAppendEntries, wireRequestVote, wireInstallSnapshot, wireTimeoutNow, wireRequestPreVote} {
				_, _ = decodeRequest(typ, body)
				for _, r := range resps {
					_, _ = decodeResponse(typ, body, r)
				}
			}
		}
		// The body as an AppendEntries decoded as it arrives, whatever its
		// length claims; where the whole body came, it must decode as the
		// buffered decoder does.
		var streamed any
		var streamErr error
		r := bufio.NewReader(bytes.NewReader(data))
		if _, n, herr := readFrameHeader(r); herr == nil {
			streamed, streamErr = streamAppendEntries(r, n)
		}
		runtime.ReadMemStats(&after)
		// Seven decodes of the body: each entry costs a Log (96 bytes) and a
		// pointer per minLogBytes, copies are at most the body; the frame
		// and a streamed slice cost at most frameReadStep before their bytes
		// arrive, then twice what arrived; a streamed block of Logs at most
		// logBlock of them.
		limit := 7*(len(data)/minLogBytes*128+2*len(data)) + 3*frameReadStep + logBlock*128 + 64<<10
		if got := after.TotalAlloc - before.TotalAlloc; got > uint64(limit) {
			t.Fatalf("%d bytes of input allocated %d bytes (limit %d)", len(data), got, limit)
		}
		if err == nil && typ == wireAppendEntries {
			buffered, bufErr := decodeRequest(typ, body)
			if (bufErr == nil) != (streamErr == nil) {
				t.Fatalf("buffered decode: %v; streamed: %v", bufErr, streamErr)
			}
			if bufErr == nil {
				sameRequest(t, streamed, buffered)
			}
		}
	})
}
