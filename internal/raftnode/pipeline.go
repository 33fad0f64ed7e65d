package raftnode

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// pipeline sends AppendEntries on a connection of its own without waiting
// for each response; one goroutine reads the responses, in order, and hands
// the finished futures to Consumer. At most maxInFlight requests await a
// response (the send blocks until the reader takes one), as in
// NetworkTransport. After a failed read the connection is closed, so every
// later future fails too and Raft falls back to plain AppendEntries.
type pipeline struct {
	t        *Transport
	c        *outConn
	acks     *pipelineAcks
	inflight chan *appendFuture
	finished chan raft.AppendFuture
	stop     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
}

var _ raft.AppendPipeline = (*pipeline)(nil)

// pipelineAcks reports the requests a follower accepted (Success, in the
// request's term) with the time, on the now clock, each one was sent.
type pipelineAcks struct {
	now      LeaseClock
	accepted func(term uint64, sent time.Duration)
}

// AppendEntriesPipeline opens a pipeline to target.
func (t *Transport) AppendEntriesPipeline(_ raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	return t.openPipeline(target, nil)
}

// openPipeline opens a pipeline to target that reports accepted requests to
// acks, if not nil, before their futures finish.
func (t *Transport) openPipeline(target raft.ServerAddress, acks *pipelineAcks) (raft.AppendPipeline, error) {
	c, err := t.getConn(target)
	if err != nil {
		return nil, err
	}
	p := &pipeline{
		t: t, c: c, acks: acks,
		// The reader holds one future while it waits for its response and
		// the sender one while it waits to hand it over: maxInFlight-2 more.
		inflight: make(chan *appendFuture, maxInFlight-2),
		finished: make(chan raft.AppendFuture, maxInFlight-2),
		stop:     make(chan struct{}),
	}
	if !t.track(p) {
		_ = c.c.Close()
		return nil, raft.ErrTransportShutdown
	}
	p.wg.Add(1)
	go p.readResponses()
	return p, nil
}

// AppendEntries sends args; its future completes when the response is read.
func (p *pipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	f := &appendFuture{start: time.Now(), args: args, resp: resp, done: make(chan struct{})}
	if p.acks != nil {
		f.sent = p.acks.now()
	}
	if p.t.timeout > 0 {
		_ = p.c.c.SetWriteDeadline(time.Now().Add(p.t.timeout))
	}
	if err := p.c.send(args); err != nil {
		_ = p.c.c.Close()
		return nil, err
	}
	select {
	case p.inflight <- f:
		return f, nil
	case <-p.stop:
		return nil, raft.ErrPipelineShutdown
	}
}

func (p *pipeline) readResponses() {
	defer p.wg.Done()
	for {
		var f *appendFuture
		select {
		case f = <-p.inflight:
		case <-p.stop:
			return
		}
		if p.t.timeout > 0 {
			_ = p.c.c.SetReadDeadline(time.Now().Add(p.t.timeout))
		}
		ok, err := p.c.recv(f.resp)
		if !ok {
			_ = p.c.c.Close()
		}
		f.err = err
		if err == nil && p.acks != nil && f.resp.Success && f.resp.Term == f.args.Term {
			p.acks.accepted(f.args.Term, f.sent)
		}
		close(f.done)
		select {
		case p.finished <- f:
		case <-p.stop:
			return
		}
	}
}

// Consumer is the stream of finished futures, in the order of sending.
func (p *pipeline) Consumer() <-chan raft.AppendFuture { return p.finished }

// Close closes the connection and waits for the reader to stop. Futures
// not yet finished never finish; Raft stops waiting for them on Close.
func (p *pipeline) Close() error {
	p.once.Do(func() {
		close(p.stop)
		_ = p.c.c.Close()
		p.wg.Wait()
		p.t.untrack(p)
	})
	return nil
}

// appendFuture is one pipelined AppendEntries.
type appendFuture struct {
	start time.Time
	sent  time.Duration // on pipelineAcks.now, when acks are reported
	args  *raft.AppendEntriesRequest
	resp  *raft.AppendEntriesResponse
	err   error
	done  chan struct{}
}

var _ raft.AppendFuture = (*appendFuture)(nil)

// Error waits for the response and returns its error.
func (f *appendFuture) Error() error {
	<-f.done
	return f.err
}

func (f *appendFuture) Start() time.Time                      { return f.start }
func (f *appendFuture) Request() *raft.AppendEntriesRequest   { return f.args }
func (f *appendFuture) Response() *raft.AppendEntriesResponse { return f.resp }
