package eventual

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cairnkv/cairn/internal/peer"
)

// senders batch the records this node sends to each peer: while a call to
// a peer is in flight, the writes for it queue, and the next call carries
// all of them, so concurrent writes share round trips as they share fsyncs.
type senders struct {
	e     *Engine
	mu    sync.Mutex
	peers map[string]*sender // by address
	wg    sync.WaitGroup
}

type sender struct {
	queue chan *sendReq
	slots chan struct{} // calls in flight at once
	held  *sendReq      // taken from queue, too large for the last batch: the next one's first (loop only)
}

// sendReq is one caller's puts for one peer, answered on done.
type sendReq struct {
	puts     []put
	check    bool // the coordinator's own stamps: the peer checks them against its clock
	deadline time.Time
	out      []outcome
	err      error
	done     chan struct{}
}

const (
	sendersInflight = 4
	maxSendBatch    = 512
)

func newSenders(e *Engine) *senders { return &senders{e: e, peers: map[string]*sender{}} }

// put sends puts to the peer at addr and waits for its answer or ctx. Puts
// of more than MaxMessageBytes go in several messages.
func (s *senders) put(ctx context.Context, addr string, puts []put, check bool) ([]outcome, error) {
	limit := s.e.cfg.MaxMessageBytes
	if putsBytes(puts) <= limit {
		return s.putOne(ctx, addr, puts, check)
	}
	out := make([]outcome, 0, len(puts))
	var errs []error
	for start := 0; start < len(puts); {
		end, n := start, 0
		for end < len(puts) && (end == start || n+putBytes(puts[end]) <= limit) {
			n += putBytes(puts[end])
			end++
		}
		o, err := s.putOne(ctx, addr, puts[start:end], check)
		if err != nil && o == nil {
			return nil, err
		}
		out = append(out, o...)
		errs = append(errs, err)
		start = end
	}
	return out, errors.Join(errs...)
}

// putBytes is about what p adds to a message.
func putBytes(p put) int { return len(p.key) + len(p.hint) + p.rec.wireLen() }

func putsBytes(puts []put) int {
	n := 0
	for _, p := range puts {
		n += putBytes(p)
	}
	return n
}

func (s *senders) putOne(ctx context.Context, addr string, puts []put, check bool) ([]outcome, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(s.e.cfg.RequestTimeout)
	}
	req := &sendReq{puts: puts, check: check, deadline: dl, done: make(chan struct{})}
	sd := s.sender(addr)
	select {
	case sd.queue <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.e.ctx.Done():
		return nil, errClosed
	}
	select {
	case <-req.done:
		return req.out, req.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *senders) sender(addr string) *sender {
	s.mu.Lock()
	defer s.mu.Unlock()
	sd := s.peers[addr]
	if sd == nil {
		sd = &sender{queue: make(chan *sendReq, 4096), slots: make(chan struct{}, sendersInflight)}
		s.peers[addr] = sd
		s.wg.Add(1)
		go s.loop(addr, sd)
	}
	return sd
}

func (s *senders) wait() { s.wg.Wait() }

func (s *senders) loop(addr string, sd *sender) {
	defer s.wg.Done()
	for {
		select {
		case sd.slots <- struct{}{}:
		case <-s.e.ctx.Done():
			return
		}
		var batch []*sendReq
		if sd.held != nil {
			batch, sd.held = append(batch, sd.held), nil
		} else {
			select {
			case r := <-sd.queue:
				batch = append(batch, r)
			case <-s.e.ctx.Done():
				return
			}
		}
		// A batch ends at maxSendBatch records or MaxMessageBytes, the
		// first request that would take it over waiting for the next.
		n, size := len(batch[0].puts), putsBytes(batch[0].puts)
	more:
		for n < maxSendBatch && size < s.e.cfg.MaxMessageBytes {
			select {
			case r := <-sd.queue:
				if size+putsBytes(r.puts) > s.e.cfg.MaxMessageBytes {
					sd.held = r
					break more
				}
				batch = append(batch, r)
				n += len(r.puts)
				size += putsBytes(r.puts)
			default:
				break more
			}
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-sd.slots }()
			s.call(addr, batch)
		}()
	}
}

// call sends one batch in one RPC and hands each request its outcomes.
func (s *senders) call(addr string, batch []*sendReq) {
	dl := batch[0].deadline
	size := binary.MaxVarintLen64
	for _, r := range batch {
		size += putsBytes(r.puts)
	}
	w := writer{b: make([]byte, 0, size)}
	total := 0
	for _, r := range batch {
		total += len(r.puts)
		if r.deadline.After(dl) {
			dl = r.deadline
		}
	}
	w.uvarint(uint64(total))
	for _, r := range batch {
		for _, p := range r.puts {
			w.str(p.key)
			w.str(p.hint)
			flags := byte(0)
			if r.check {
				flags = 1
			}
			w.byte1(flags)
			w.rec(p.rec)
		}
	}
	ctx, cancel := context.WithDeadline(s.e.ctx, dl)
	out, err := s.e.cfg.RPC.CallOwned(ctx, addr, methodPut, w.b) // w.b is this call's
	cancel()
	var outs []outcome
	var errs []error
	if err == nil {
		outs, errs, err = decodePutReply(out, total)
	}
	i := 0
	for _, r := range batch {
		if err != nil {
			r.err = err
		} else {
			r.out = outs[i : i+len(r.puts)]
			r.err = errors.Join(errs[i : i+len(r.puts)]...)
		}
		i += len(r.puts)
		close(r.done)
	}
}

// Put replies: per record a status byte, and for a refusal its message.
const (
	putApplied      = 0
	putAppliedLive  = 1 // applied, and a live value was there before
	putRefusedClock = 2
)

func decodePutReply(b []byte, n int) ([]outcome, []error, error) {
	rd := reader{b: b}
	if got := rd.count(1); rd.err == nil && got != n {
		return nil, nil, fmt.Errorf("%w: %d answers for %d records", errBadRecord, got, n)
	}
	outs := make([]outcome, n)
	errs := make([]error, n)
	for i := range n {
		switch rd.byte1() {
		case putApplied:
			outs[i] = outcome{applied: true}
		case putAppliedLive:
			outs[i] = outcome{applied: true, hadLive: true}
		case putRefusedClock:
			errs[i] = &peer.Error{Code: codeClock, Msg: rd.str()}
		default:
			rd.fail()
		}
	}
	if rd.err != nil {
		return nil, nil, rd.err
	}
	return outs, errs, nil
}
