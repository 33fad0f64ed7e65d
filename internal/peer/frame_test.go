package peer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, f := range []frame{
		{kind: frameRequest, id: 1, method: "raft.Propose", payload: []byte("cmd")},
		{kind: frameRequest, id: 1<<64 - 1, timeout: 5 * time.Second, method: "m"},
		{kind: frameReply, id: 7, payload: bytes.Repeat([]byte{0xab}, frameReadChunk+1)},
		{kind: frameReply, id: 8, code: "not_leader", msg: "n2 leads"},
	} {
		b := encodeFrame(f)
		body, err := readFrame(bytes.NewReader(b), DefaultMaxFrameBytes)
		if err != nil {
			t.Fatalf("%+v: %v", f.method, err)
		}
		got, err := parseFrame(body)
		if err != nil {
			t.Fatal(err)
		}
		if !sameFrame(got, f) {
			t.Fatalf("round trip: got %+v, want %+v", got, f)
		}
	}
	// A reply's message is cut to the field's size, not refused.
	b := encodeFrame(frame{kind: frameReply, code: "c", msg: strings.Repeat("m", maxMessageLen+10)})
	body, _ := readFrame(bytes.NewReader(b), DefaultMaxFrameBytes)
	if f, err := parseFrame(body); err != nil || len(f.msg) != maxMessageLen {
		t.Fatalf("long message: %d bytes, %v", len(f.msg), err)
	}
}

func encodeFrame(f frame) []byte {
	var b []byte
	if f.kind == frameRequest {
		b = appendRequestHead(nil, f.id, f.timeout, f.method, len(f.payload))
	} else {
		b = appendReplyHead(nil, f.id, f.code, f.msg, len(f.payload))
	}
	return append(b, f.payload...)
}

func sameFrame(a, b frame) bool {
	return a.kind == b.kind && a.id == b.id && a.timeout == b.timeout && a.method == b.method &&
		a.code == b.code && a.msg == b.msg && bytes.Equal(a.payload, b.payload)
}

// A length that promises more than the peer sends costs no more memory than
// what it sent: a frame claiming 1 GiB, followed by 1 MiB and a hang-up,
// allocates a few MiB, not 1 GiB.
func TestReadFrameAllocatesAsBytesArrive(t *testing.T) {
	data := binary.BigEndian.AppendUint32(nil, 1<<30)
	data = append(data, make([]byte, 1<<20)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := readFrame(bytes.NewReader(data), DefaultMaxFrameBytes)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: %v, want ErrUnexpectedEOF", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
		t.Fatalf("reading 1 MiB of a frame claiming 1 GiB allocated %d MiB", grew>>20)
	}
	if _, err := readFrame(bytes.NewReader(data), 1<<29); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("frame over the limit: %v", err)
	}
	if _, err := readFrame(bytes.NewReader(nil), 1<<20); !errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("no frame at all: %v, want io.EOF (a clean hang-up)", err)
	}
}

// FuzzFrameDecode feeds arbitrary bytes to the frame reader and decoder:
// they must never panic or allocate past the limit, and whatever they accept
// must encode back to a frame that decodes the same.
func FuzzFrameDecode(f *testing.F) {
	for _, fr := range []frame{
		{kind: frameRequest, id: 1, method: "raft.Propose", payload: []byte("cmd")},
		{kind: frameRequest, id: 2, timeout: time.Second, method: "raft.ReadIndex"},
		{kind: frameReply, id: 1, payload: []byte{0, 0, 0, 0, 0, 0, 0, 9}},
		{kind: frameReply, id: 3, code: "not_leader", msg: "n2 leads"},
	} {
		b := encodeFrame(fr)
		f.Add(b)
		f.Add(b[:len(b)-1])                  // truncated
		f.Add(append(b, encodeFrame(fr)...)) // two frames
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 12, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0})
	const limit = 1 << 16
	f.Fuzz(func(t *testing.T, data []byte) {
		body, err := readFrame(bytes.NewReader(data), limit)
		if err != nil {
			return
		}
		if len(body) > limit {
			t.Fatalf("a %d-byte body past the %d limit", len(body), limit)
		}
		fr, err := parseFrame(body)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("decode error %v is not ErrBadFrame", err)
			}
			return
		}
		again, err := readFrame(bytes.NewReader(encodeFrame(fr)), limit)
		if err != nil {
			t.Fatalf("re-encoded %+v: %v", fr, err)
		}
		fr2, err := parseFrame(again)
		if err != nil || !sameFrame(fr, fr2) {
			t.Fatalf("re-encoded frame decodes to %+v (%v), want %+v", fr2, err, fr)
		}
	})
}
