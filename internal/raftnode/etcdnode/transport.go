package etcdnode

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/cairnkv/cairn/internal/peer"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// maxMessage bounds one message on the wire: the largest command
// (strong.MaxEntryBytes at 64 MiB values is 129 MiB) with room to spare.
const maxMessage = 512 << 20

// transport carries raft messages over the peer mux (peer.ProtoEtcdRaft):
// one long-lived outgoing stream per peer, written by one goroutine that
// takes every message queued for that peer (one Ready's, or several) and
// writes them in one write. Frames are a uvarint length and the message's
// protobuf bytes. Raft tolerates loss: a full queue or a broken stream drops
// messages and reports the peer unreachable.
type transport struct {
	n      *Node
	ln     net.Listener
	dialer *peer.Dialer

	mu      sync.Mutex
	streams map[uint64]*stream
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
	done    chan struct{}
}

type stream struct {
	addr string
	q    chan []*pb.Message
}

func newTransport(n *Node, ln net.Listener, d *peer.Dialer) *transport {
	t := &transport{n: n, ln: ln, dialer: d, streams: map[uint64]*stream{}, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	t.wg.Add(1)
	go t.accept()
	return t
}

// send queues msgs, grouped by destination. It never blocks the Ready loop.
func (t *transport) send(msgs []*pb.Message) {
	if len(msgs) == 0 {
		return
	}
	byTo := map[uint64][]*pb.Message{}
	for _, m := range msgs {
		byTo[m.GetTo()] = append(byTo[m.GetTo()], m)
	}
	for to, ms := range byTo {
		s := t.stream(to)
		if s == nil {
			continue
		}
		select {
		case s.q <- ms:
		default:
			t.n.reportUnreachable(to)
		}
	}
}

func (t *transport) stream(to uint64) *stream {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	if s := t.streams[to]; s != nil {
		return s
	}
	p, ok := t.n.peers[to]
	if !ok {
		return nil
	}
	s := &stream{addr: p.Addr, q: make(chan []*pb.Message, 1024)}
	t.streams[to] = s
	t.wg.Add(1)
	go t.write(to, s)
	return s
}

// write owns the outgoing connection to one peer.
func (t *transport) write(to uint64, s *stream) {
	defer t.wg.Done()
	var conn net.Conn
	defer func() {
		if conn != nil {
			t.forget(conn)
		}
	}()
	var buf []byte
	for {
		var batch []*pb.Message
		select {
		case batch = <-s.q:
		case <-t.done:
			return
		}
	more:
		for {
			select {
			case b := <-s.q:
				batch = append(batch, b...)
			default:
				break more
			}
		}
		if conn == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			c, err := t.dialer.Dial(ctx, s.addr, peer.ProtoEtcdRaft)
			cancel()
			if err != nil {
				t.n.reportUnreachable(to)
				continue
			}
			if !t.track(c) {
				return
			}
			conn = c
		}
		buf = buf[:0]
		for _, m := range batch {
			buf = binary.AppendUvarint(buf, uint64(proto.Size(m)))
			var err error
			if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf, m); err != nil {
				t.n.log.Error("cannot encode a raft message", "err", err)
				return
			}
		}
		_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(buf); err != nil {
			t.forget(conn)
			conn = nil
			t.n.reportUnreachable(to)
		}
		if cap(buf) > 4<<20 {
			buf = nil // do not pin a large entry's buffer
		}
	}
}

func (t *transport) accept() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		if !t.track(c) {
			return
		}
		t.wg.Add(1)
		go t.read(c)
	}
}

// read decodes messages from one incoming stream and hands them to the node.
func (t *transport) read(c net.Conn) {
	defer t.wg.Done()
	defer t.forget(c)
	r := bufio.NewReaderSize(c, 256<<10)
	for {
		m, err := readMessage(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				t.n.log.Debug("raft stream ended", "err", err)
			}
			return
		}
		if !t.n.recv(m) {
			return
		}
	}
}

func readMessage(r *bufio.Reader) (*pb.Message, error) {
	l, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if l > maxMessage {
		return nil, fmt.Errorf("etcdnode: a %d-byte raft message is over the limit", l)
	}
	b := make([]byte, l)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	m := &pb.Message{}
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("etcdnode: decode a raft message: %w", err)
	}
	return m, nil
}

func (t *transport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		_ = c.Close()
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *transport) forget(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	_ = c.Close()
}

func (t *transport) close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	close(t.done)
	_ = t.ln.Close()
	for c := range t.conns {
		_ = c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
}
