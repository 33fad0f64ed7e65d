package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/rpc"
	"sync"
	"time"
)

// RPCServer serves internal RPC (net/rpc with gob) on the mux's ProtoRPC
// listener. Only peers reach it: it exists on the peer port alone, behind peer TLS.
type RPCServer struct {
	srv *rpc.Server
	ln  net.Listener
	wg  sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// NewRPCServer registers rcvr's exported methods under name.
func NewRPCServer(ln net.Listener, name string, rcvr any) (*RPCServer, error) {
	srv := rpc.NewServer()
	if err := srv.RegisterName(name, rcvr); err != nil {
		return nil, fmt.Errorf("peer: register rpc: %w", err)
	}
	return &RPCServer{srv: srv, ln: ln, conns: map[net.Conn]struct{}{}}, nil
}

// Serve accepts until the listener closes.
func (s *RPCServer) Serve() {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[conn] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.srv.ServeConn(conn)
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
		}()
	}
}

// Close closes the listener and every connection, and waits for handlers.
func (s *RPCServer) Close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// RPCClient keeps one multiplexed connection per peer address.
type RPCClient struct {
	dialer *Dialer

	mu      sync.Mutex
	clients map[string]*rpc.Client
	closed  bool
}

// NewRPCClient returns a client that dials through d.
func NewRPCClient(d *Dialer) *RPCClient {
	return &RPCClient{dialer: d, clients: map[string]*rpc.Client{}}
}

// Call invokes method on the peer at addr and waits for the reply or ctx.
func (c *RPCClient) Call(ctx context.Context, addr, method string, args, reply any) error {
	cl, err := c.client(ctx, addr)
	if err != nil {
		return err
	}
	call := cl.Go(method, args, reply, make(chan *rpc.Call, 1))
	select {
	case <-call.Done:
		if call.Error != nil {
			var se rpc.ServerError
			if !errors.As(call.Error, &se) {
				c.drop(addr, cl) // connection broken: redial next time
			}
			return fmt.Errorf("peer: rpc %s to %s: %w", method, addr, call.Error)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("peer: rpc %s to %s: %w", method, addr, ctx.Err())
	}
}

func (c *RPCClient) client(ctx context.Context, addr string) (*rpc.Client, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	cl := c.clients[addr]
	c.mu.Unlock()
	if cl != nil {
		return cl, nil
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := c.dialer.Dial(dctx, addr, ProtoRPC)
	if err != nil {
		return nil, err
	}
	cl = rpc.NewClient(conn)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		_ = cl.Close()
		return nil, ErrClosed
	}
	if old := c.clients[addr]; old != nil {
		_ = cl.Close()
		return old, nil
	}
	c.clients[addr] = cl
	return cl, nil
}

func (c *RPCClient) drop(addr string, cl *rpc.Client) {
	c.mu.Lock()
	if c.clients[addr] == cl {
		delete(c.clients, addr)
	}
	c.mu.Unlock()
	_ = cl.Close()
}

// Close closes every connection.
func (c *RPCClient) Close() {
	c.mu.Lock()
	c.closed = true
	for a, cl := range c.clients {
		_ = cl.Close()
		delete(c.clients, a)
	}
	c.mu.Unlock()
}
