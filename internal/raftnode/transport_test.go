//lint:file-ignore SA1019 the wire format carries every field Raft v1.8.0 sets, its deprecated Leader and Candidate too

package raftnode

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/peer"
	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
)

// noLeaks fails the test if it leaves a goroutine behind. Call it first: its
// check runs after every other cleanup.
func noLeaks(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

// mustTransport starts a peer mux on loopback and a Transport on it.
func mustTransport(t *testing.T) *Transport {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := peer.NewMux(ln, nil, nil, nil)
	served := make(chan struct{})
	go func() { defer close(served); _ = mux.Serve() }()
	raftLn, err := mux.Listen(peer.ProtoRaftWire, "raft")
	if err != nil {
		t.Fatal(err)
	}
	d := &peer.Dialer{}
	tr := NewTransport(TransportConfig{
		Listener: raftLn,
		Dial:     func(ctx context.Context, addr string) (net.Conn, error) { return d.Dial(ctx, addr, peer.ProtoRaftWire) },
		Addr:     ln.Addr().String(), MaxPool: 2, Timeout: 30 * time.Second,
	})
	t.Cleanup(func() {
		_ = tr.Close()
		_ = mux.Close()
		<-served
	})
	return tr
}

// serveRPCs answers the RPCs tr consumes with answer until the test ends.
func serveRPCs(t *testing.T, tr *Transport, answer func(raft.RPC)) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case rpc := <-tr.Consumer():
				answer(rpc)
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })
}

// echoAppend answers an AppendEntries with its term and the index of its last
// entry (PrevLogEntry + entries), and checks each entry's Data is its index.
func echoAppend(rpc raft.RPC) {
	req, ok := rpc.Command.(*raft.AppendEntriesRequest)
	if !ok {
		rpc.Respond(nil, errors.New("not an append"))
		return
	}
	for i, l := range req.Entries {
		if l.Index != req.PrevLogEntry+uint64(i)+1 || string(l.Data) != string(rune('a'+l.Index%26)) {
			rpc.Respond(nil, errors.New("bad entry"))
			return
		}
	}
	rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: req.PrevLogEntry + uint64(len(req.Entries)), Success: true}, nil)
}

func appendReq(prev uint64, n int) *raft.AppendEntriesRequest {
	req := &raft.AppendEntriesRequest{RPCHeader: testHeader(), Term: 3, Leader: []byte("n1"), PrevLogEntry: prev, PrevLogTerm: 3, LeaderCommitIndex: prev}
	for i := 1; i <= n; i++ {
		idx := prev + uint64(i)
		req.Entries = append(req.Entries, &raft.Log{Index: idx, Term: 3, Data: []byte(string(rune('a' + idx%26)))})
	}
	return req
}

func TestTransportPipelineInOrder(t *testing.T) {
	noLeaks(t)
	server, client := mustTransport(t), mustTransport(t)
	serveRPCs(t, server, echoAppend)
	p, err := client.AppendEntriesPipeline("n2", server.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	const rounds = 200
	errc := make(chan error, 1)
	go func() {
		var prev uint64
		for i := 0; i < rounds; i++ {
			f := <-p.Consumer()
			if err := f.Error(); err != nil {
				errc <- err
				return
			}
			if f.Request().PrevLogEntry != prev || f.Response().LastLog != prev+uint64(i%5) || !f.Response().Success {
				errc <- errors.New("a response out of order or wrong")
				return
			}
			prev = f.Response().LastLog
		}
		errc <- nil
	}()
	var prev uint64
	for i := 0; i < rounds; i++ {
		req := appendReq(prev, i%5)
		if _, err := p.AppendEntries(req, &raft.AppendEntriesResponse{}); err != nil {
			t.Fatal(err)
		}
		prev += uint64(i % 5)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestTransportHeartbeatAndRemoteError(t *testing.T) {
	noLeaks(t)
	server, client := mustTransport(t), mustTransport(t)
	beats := make(chan *raft.AppendEntriesRequest, 1)
	server.SetHeartbeatHandler(func(rpc raft.RPC) {
		beats <- rpc.Command.(*raft.AppendEntriesRequest)
		rpc.Respond(&raft.AppendEntriesResponse{Term: 9, Success: true}, nil)
	})
	serveRPCs(t, server, func(rpc raft.RPC) {
		if _, ok := rpc.Command.(*raft.RequestVoteRequest); ok {
			rpc.Respond(nil, errors.New("vote refused: some reason"))
			return
		}
		echoAppend(rpc)
	})
	var resp raft.AppendEntriesResponse
	hb := &raft.AppendEntriesRequest{RPCHeader: testHeader(), Term: 9}
	if err := client.AppendEntries("n2", server.LocalAddr(), hb, &resp); err != nil || resp.Term != 9 || !resp.Success {
		t.Fatalf("heartbeat: %+v %v", resp, err)
	}
	// The handler sends on beats before it responds.
	select {
	case got := <-beats:
		if got.Term != 9 || string(got.Addr) != string(hb.Addr) {
			t.Fatalf("the handler saw %+v", got)
		}
	default:
		t.Fatal("a heartbeat did not reach the heartbeat handler")
	}
	// Not a heartbeat (it has entries): the consumer answers it.
	if err := client.AppendEntries("n2", server.LocalAddr(), appendReq(0, 3), &resp); err != nil || resp.LastLog != 3 {
		t.Fatalf("append: %+v %v", resp, err)
	}
	select {
	case b := <-beats:
		t.Fatalf("an AppendEntries with entries took the heartbeat path: %+v", b)
	default:
	}
	var vresp raft.RequestVoteResponse
	err := client.RequestVote("n2", server.LocalAddr(), &raft.RequestVoteRequest{Term: 1}, &vresp)
	if err == nil || err.Error() != "vote refused: some reason" {
		t.Fatalf("remote error: %v", err)
	}
	// The connection survives a remote error.
	if err := client.AppendEntries("n2", server.LocalAddr(), appendReq(3, 1), &resp); err != nil || resp.LastLog != 4 {
		t.Fatalf("after a remote error: %+v %v", resp, err)
	}
}

func TestTransportInstallSnapshot(t *testing.T) {
	noLeaks(t)
	server, client := mustTransport(t), mustTransport(t)
	data := make([]byte, 5<<20)
	_, _ = rand.Read(data)
	want := sha256.Sum256(data)
	serveRPCs(t, server, func(rpc raft.RPC) {
		switch req := rpc.Command.(type) {
		case *raft.InstallSnapshotRequest:
			h := sha256.New()
			n, err := io.Copy(h, rpc.Reader)
			ok := err == nil && n == req.Size && bytes.Equal(h.Sum(nil), want[:])
			rpc.Respond(&raft.InstallSnapshotResponse{Term: req.Term, Success: ok}, err)
		case *raft.TimeoutNowRequest:
			rpc.Respond(&raft.TimeoutNowResponse{RPCHeader: testHeader()}, nil)
		case *raft.RequestPreVoteRequest:
			rpc.Respond(&raft.RequestPreVoteResponse{Term: req.Term, Granted: true}, nil)
		}
	})
	args := &raft.InstallSnapshotRequest{RPCHeader: testHeader(), SnapshotVersion: 1, Term: 4, Leader: []byte("n1"), LastLogIndex: 50, Size: int64(len(data))}
	var resp raft.InstallSnapshotResponse
	if err := client.InstallSnapshot("n2", server.LocalAddr(), args, &resp, bytes.NewReader(data)); err != nil || !resp.Success || resp.Term != 4 {
		t.Fatalf("install snapshot: %+v %v", resp, err)
	}
	var tresp raft.TimeoutNowResponse
	if err := client.TimeoutNow("n2", server.LocalAddr(), &raft.TimeoutNowRequest{}, &tresp); err != nil || string(tresp.ID) != "n1" {
		t.Fatalf("timeout now: %+v %v", tresp, err)
	}
	var presp raft.RequestPreVoteResponse
	if err := client.RequestPreVote("n2", server.LocalAddr(), &raft.RequestPreVoteRequest{Term: 8}, &presp); err != nil || !presp.Granted || presp.Term != 8 {
		t.Fatalf("pre-vote: %+v %v", presp, err)
	}
}

// A peer that goes away with requests in flight fails them, and nothing is
// left running once the pipeline and the transports are closed.
func TestTransportPeerDiesMidPipeline(t *testing.T) {
	noLeaks(t)
	server, client := mustTransport(t), mustTransport(t)
	held := make(chan raft.RPC, 1)
	serveRPCs(t, server, func(rpc raft.RPC) {
		if rpc.Command.(*raft.AppendEntriesRequest).PrevLogEntry == 0 {
			echoAppend(rpc)
			return
		}
		held <- rpc // never answered
	})
	p, err := client.AppendEntriesPipeline("n2", server.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.AppendEntries(appendReq(0, 1), &raft.AppendEntriesResponse{}); err != nil {
		t.Fatal(err)
	}
	if f := <-p.Consumer(); f.Error() != nil {
		t.Fatal(f.Error())
	}
	if _, err := p.AppendEntries(appendReq(1, 1), &raft.AppendEntriesResponse{}); err != nil {
		t.Fatal(err)
	}
	<-held
	_ = server.Close() // the peer dies with the request in flight
	f := <-p.Consumer()
	if f.Error() == nil {
		t.Fatal("the in-flight request succeeded after its peer closed")
	}
	// The pipeline's connection is gone: later sends fail, at once or in
	// their futures.
	if f2, err := p.AppendEntries(appendReq(2, 1), &raft.AppendEntriesResponse{}); err == nil {
		if (<-p.Consumer()).Error() == nil {
			t.Fatalf("a send after the peer died succeeded: %v", f2)
		}
	}
	var resp raft.AppendEntriesResponse
	if err := client.AppendEntries("n2", server.LocalAddr(), appendReq(0, 1), &resp); err == nil {
		t.Fatal("an AppendEntries to a closed peer succeeded")
	}
}

func TestTransportClose(t *testing.T) {
	noLeaks(t)
	server, client := mustTransport(t), mustTransport(t)
	serveRPCs(t, server, echoAppend)
	var resp raft.AppendEntriesResponse
	if err := client.AppendEntries("n2", server.LocalAddr(), appendReq(0, 2), &resp); err != nil {
		t.Fatal(err) // leaves a pooled connection, and one served by server
	}
	p, err := client.AppendEntriesPipeline("n2", server.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	if err := client.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	if _, err := p.AppendEntries(appendReq(0, 1), &raft.AppendEntriesResponse{}); err == nil {
		if (<-p.Consumer()).Error() == nil {
			t.Fatal("a closed transport's pipeline still sends")
		}
	}
	if err := client.AppendEntries("n2", server.LocalAddr(), appendReq(0, 1), &resp); !errors.Is(err, raft.ErrTransportShutdown) {
		t.Fatalf("after Close: %v, want ErrTransportShutdown", err)
	}
	if _, err := client.AppendEntriesPipeline("n2", server.LocalAddr()); !errors.Is(err, raft.ErrTransportShutdown) {
		t.Fatalf("a pipeline after Close: %v, want ErrTransportShutdown", err)
	}
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
}

// A malformed frame closes the connection it came on; the transport goes on
// serving others.
func TestTransportMalformedFrameClosesConn(t *testing.T) {
	noLeaks(t)
	server, client := mustTransport(t), mustTransport(t)
	serveRPCs(t, server, echoAppend)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, frame := range [][]byte{
		{wireAppendEntries, 3, 0, 0xff, 0xff},             // a slice longer than the frame
		{wireAppendEntries, 0xff, 0xff, 0xff, 0xff, 0x0f}, // a frame over maxFrame
		{42, 0}, // an unknown type
	} {
		c, err := (&peer.Dialer{}).Dial(ctx, string(server.LocalAddr()), peer.ProtoRaftWire)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(frame); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("frame %x: the server answered %d bytes", frame, n)
		}
		_ = c.Close()
	}
	var resp raft.AppendEntriesResponse
	if err := client.AppendEntries("n2", server.LocalAddr(), appendReq(0, 1), &resp); err != nil || resp.LastLog != 1 {
		t.Fatalf("after malformed frames: %+v %v", resp, err)
	}
}
