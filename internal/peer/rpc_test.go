package peer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// leakCheck fails the test if goroutines started during it outlive it.
// Call it first, so its cleanup runs after every other.
func leakCheck(t *testing.T) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

// testLogger routes a component's logs to the test's log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// mustRPC starts an endpoint on its own mux, closed when the test ends.
func mustRPC(t *testing.T, o RPCOptions) (*RPC, string) {
	t.Helper()
	m := mustMux(t, testLogger(t))
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	r, err := NewRPC(m, &Dialer{}, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, m.Addr().String()
}

func mustRegister(t *testing.T, r *RPC, name string, methods map[string]Handler) *Service {
	t.Helper()
	s, err := r.Register(name, methods)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func echo(_ context.Context, p []byte) ([]byte, error) { return p, nil }

func TestRPCRegistry(t *testing.T) {
	leakCheck(t)
	srv, _ := mustRPC(t, RPCOptions{})
	mustRegister(t, srv, "echo", map[string]Handler{"Echo": echo})
	if _, err := srv.Register("echo", map[string]Handler{"Other": echo}); !errors.Is(err, ErrServiceTaken) {
		t.Fatalf("a second service of the same name: %v, want ErrServiceTaken", err)
	}
	for _, bad := range []struct {
		name    string
		methods map[string]Handler
	}{
		{"", map[string]Handler{"M": echo}},
		{"a.b", map[string]Handler{"M": echo}},
		{"svc", map[string]Handler{"": echo}},
		{"svc", map[string]Handler{"M": nil}},
		{"svc", map[string]Handler{strings.Repeat("m", 252): echo}},
	} {
		if _, err := srv.Register(bad.name, bad.methods); !errors.Is(err, ErrBadName) {
			t.Errorf("Register(%q, %v): %v, want ErrBadName", bad.name, bad.methods, err)
		}
	}
	// The endpoint owns the RPC byte: a second one on the same mux is refused.
	if _, err := NewRPC(mustMuxOf(t, srv), nil, RPCOptions{}); !errors.Is(err, ErrProtoTaken) {
		t.Fatalf("a second endpoint on one mux: %v, want ErrProtoTaken", err)
	}
}

// mustMuxOf is the mux r listens on.
func mustMuxOf(t *testing.T, r *RPC) *Mux {
	t.Helper()
	vl, ok := r.ln.(*virtualListener)
	if !ok {
		t.Fatalf("listener %T", r.ln)
	}
	return vl.mux
}

// Many calls from many goroutines share one connection, run at the same
// time on the server, and each caller gets its own reply.
func TestRPCConcurrentCallsOnOneConnection(t *testing.T) {
	leakCheck(t)
	srv, addr := mustRPC(t, RPCOptions{})
	const barrier = 16
	var arrived atomic.Int32
	all := make(chan struct{})
	mustRegister(t, srv, "test", map[string]Handler{
		"Echo": func(_ context.Context, p []byte) ([]byte, error) { return append([]byte("re:"), p...), nil },
		// Barrier answers only once barrier calls are inside it at once.
		"Barrier": func(ctx context.Context, _ []byte) ([]byte, error) {
			if arrived.Add(1) == barrier {
				close(all)
			}
			select {
			case <-all:
				return nil, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	})
	cli, _ := mustRPC(t, RPCOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for g := 0; g < 50; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				p := fmt.Appendf(nil, "%d/%d", g, i)
				out, err := cli.Call(ctx, addr, "test.Echo", p)
				if err != nil {
					errs <- err
					return
				}
				if want := "re:" + string(p); string(out) != want {
					errs <- fmt.Errorf("got %q, want %q", out, want)
					return
				}
			}
		}()
	}
	for i := 0; i < barrier; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := cli.Call(ctx, addr, "test.Barrier", nil); err != nil {
				errs <- fmt.Errorf("barrier: %w (handlers do not run concurrently?)", err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	srv.mu.Lock()
	conns := len(srv.inbound)
	srv.mu.Unlock()
	if conns != 1 {
		t.Fatalf("%d connections from one client, want 1", conns)
	}
}

// The caller's deadline travels with the request: the call returns when it
// passes, and the handler's context ends with it.
func TestRPCDeadline(t *testing.T) {
	leakCheck(t)
	srv, addr := mustRPC(t, RPCOptions{})
	handlerDone := make(chan error, 1)
	mustRegister(t, srv, "test", map[string]Handler{
		"Block": func(ctx context.Context, _ []byte) ([]byte, error) {
			if _, ok := ctx.Deadline(); !ok {
				handlerDone <- errors.New("the handler's context has no deadline")
				return nil, nil
			}
			<-ctx.Done()
			handlerDone <- nil
			return nil, ctx.Err()
		},
		"Hang": func(ctx context.Context, _ []byte) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
		"Echo": echo,
	})
	cli, _ := mustRPC(t, RPCOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := cli.Call(ctx, addr, "test.Block", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call past its deadline: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the call returned %v after a 200ms deadline", d)
	}
	select {
	case err := <-handlerDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's context did not end at the caller's deadline")
	}
	// A context that is already done sends nothing.
	if _, err := cli.Call(ctx, addr, "test.Echo", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call with an expired context: %v", err)
	}
	// Cancellation without a deadline returns at once too.
	cctx, ccancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, ccancel)
	if _, err := cli.Call(cctx, addr, "test.Hang", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v, want Canceled", err)
	}
	// The connection still serves other calls.
	ok, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if out, err := cli.Call(ok, addr, "test.Echo", []byte("x")); err != nil || string(out) != "x" {
		t.Fatalf("after timeouts: %q %v", out, err)
	}
	srv.Close() // ends the handler left blocked by the cancelled call
}

func TestRPCErrorCodes(t *testing.T) {
	leakCheck(t)
	srv, addr := mustRPC(t, RPCOptions{MaxFrameBytes: 1 << 10})
	mustRegister(t, srv, "test", map[string]Handler{
		"Coded": func(context.Context, []byte) ([]byte, error) {
			return []byte("ignored"), fmt.Errorf("wrapped: %w", &Error{Code: "not_leader", Msg: "n2 leads"})
		},
		"Plain": func(context.Context, []byte) ([]byte, error) { return nil, errors.New("disk on fire") },
		"Late": func(context.Context, []byte) ([]byte, error) {
			return nil, fmt.Errorf("waiting for the log: %w", context.DeadlineExceeded)
		},
		"Big": func(context.Context, []byte) ([]byte, error) { return make([]byte, 2<<10), nil },
	})
	cli, _ := mustRPC(t, RPCOptions{MaxFrameBytes: 1 << 10})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, tc := range []struct {
		method, code, msg string
		is                error
	}{
		{"test.Coded", "not_leader", "n2 leads", nil},
		{"test.Plain", CodeInternal, "disk on fire", nil},
		{"test.Late", CodeDeadline, "waiting for the log: context deadline exceeded", context.DeadlineExceeded},
		{"test.Big", CodeTooLarge, "", ErrFrameTooLarge},
		{"test.Missing", CodeUnknownMethod, "", ErrUnknownMethod},
		{"nothing.Here", CodeUnknownMethod, "", ErrUnknownMethod},
	} {
		t.Run(tc.method, func(t *testing.T) {
			out, err := cli.Call(ctx, addr, tc.method, nil)
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("error %v (%T), want an *Error", err, err)
			}
			if re.Code != tc.code || (tc.msg != "" && re.Msg != tc.msg) {
				t.Fatalf("code %q msg %q, want %q %q", re.Code, re.Msg, tc.code, tc.msg)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("%v is not %v", err, tc.is)
			}
			if out != nil {
				t.Fatalf("a failed call returned %q", out)
			}
		})
	}
	// A request over the limit is refused before it is sent.
	if _, err := cli.Call(ctx, addr, "test.Plain", make([]byte, 1<<10)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversize request: %v", err)
	}
	if _, err := cli.Call(ctx, addr, strings.Repeat("m", 256), nil); !errors.Is(err, ErrBadName) {
		t.Fatalf("method name over 255 bytes: %v", err)
	}
}

// A connection that breaks fails the calls in flight with ErrConnLost; the
// next call dials again.
func TestRPCRedialsBrokenConnection(t *testing.T) {
	leakCheck(t)
	srv, addr := mustRPC(t, RPCOptions{})
	entered := make(chan struct{}, 1)
	mustRegister(t, srv, "test", map[string]Handler{
		"Echo": echo,
		"Hang": func(ctx context.Context, _ []byte) ([]byte, error) {
			entered <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		},
	})
	faults := &Faults{}
	m := mustMux(t, nil)
	cli, err := NewRPC(m, &Dialer{Faults: faults}, RPCOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mustEcho := func(what string) {
		t.Helper()
		if out, err := cli.Call(ctx, addr, "test.Echo", []byte(what)); err != nil || string(out) != what {
			t.Fatalf("%s: %q %v", what, out, err)
		}
	}
	mustEcho("first")

	// Cut the link under a call in flight.
	lost := make(chan error, 1)
	go func() {
		_, err := cli.Call(ctx, addr, "test.Hang", nil)
		lost <- err
	}()
	<-entered
	faults.Block(addr)
	if err := <-lost; !errors.Is(err, ErrConnLost) {
		t.Fatalf("call in flight on a cut link: %v, want ErrConnLost", err)
	}
	if _, err := cli.Call(ctx, addr, "test.Echo", nil); !errors.Is(err, ErrPartitioned) {
		t.Fatalf("call across the partition: %v, want the dial to fail", err)
	}
	faults.Unblock(addr)
	mustEcho("after the partition")

	// The server drops the connection (a peer restarting): the client
	// notices and the next call goes out on a new one, without an error.
	srv.mu.Lock()
	for w := range srv.inbound {
		w.close(errors.New("test: dropped"))
	}
	srv.mu.Unlock()
	waitFor(t, func() bool {
		cli.mu.Lock()
		defer cli.mu.Unlock()
		return len(cli.peers) == 0
	})
	mustEcho("after the server dropped it")
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
	}
}

// Hostile or corrupt frames close the connection and change nothing else:
// the endpoint keeps serving well-behaved peers.
func TestRPCRefusesBadFrames(t *testing.T) {
	leakCheck(t)
	var logs syncBuffer
	srv, addr := mustRPC(t, RPCOptions{MaxFrameBytes: 1 << 20, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	var calls atomic.Int32
	mustRegister(t, srv, "test", map[string]Handler{
		"Echo": func(ctx context.Context, p []byte) ([]byte, error) { calls.Add(1); return echo(ctx, p) },
	})
	request := func(method string, payload []byte) []byte {
		return append(appendRequestHead(nil, 1, 0, method, len(payload)), payload...)
	}
	cases := []struct {
		name string
		raw  []byte
	}{
		{"length over the limit", binary.BigEndian.AppendUint32(nil, 1<<20+1)},
		{"length 4 GiB", []byte{0xff, 0xff, 0xff, 0xff}},
		{"body shorter than any frame", append(binary.BigEndian.AppendUint32(nil, 3), 1, 2, 3)},
		{"unknown kind", func() []byte { b := request("test.Echo", nil); b[4] = 9; return b }()},
		{"a reply sent to a server", appendReplyHead(nil, 1, "", "", 0)},
		{"method length past the body", func() []byte { b := request("test.Echo", nil); b[4+17] = 200; return b }()},
		{"empty method", request("", []byte("payload"))},
		{"timeout out of range", func() []byte { b := request("test.Echo", nil); b[4+9] = 0x80; return b }()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := (&Dialer{}).Dial(ctx, addr, ProtoRPC)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.raw); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if b, err := io.ReadAll(c); err != nil || len(b) > 0 {
				t.Fatalf("the server answered %q (%v) instead of closing the connection", b, err)
			}
		})
	}
	if calls.Load() != 0 {
		t.Fatalf("%d handlers ran for bad frames", calls.Load())
	}
	if n := strings.Count(logs.String(), "bad request frame"); n != len(cases) {
		t.Errorf("%d warnings for %d bad frames:\n%s", n, len(cases), logs.String())
	}
	cli, _ := mustRPC(t, RPCOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if out, err := cli.Call(ctx, addr, "test.Echo", []byte("still fine")); err != nil || string(out) != "still fine" {
		t.Fatalf("after bad frames: %q %v", out, err)
	}
}

// Close waits for running handlers and sends their replies before it closes
// the connections; a closed service's methods are gone while others stay.
func TestRPCCloseWaitsForHandlers(t *testing.T) {
	leakCheck(t)
	srv, addr := mustRPC(t, RPCOptions{})
	entered := make(chan struct{}, 2)
	var finished atomic.Int32
	slow := func(ctx context.Context, _ []byte) ([]byte, error) {
		entered <- struct{}{}
		<-ctx.Done()                       // Close ends the context...
		time.Sleep(100 * time.Millisecond) // ...and still waits for the handler
		finished.Add(1)
		return []byte("late reply"), nil
	}
	a := mustRegister(t, srv, "a", map[string]Handler{"Slow": slow, "Echo": echo})
	mustRegister(t, srv, "b", map[string]Handler{"Slow": slow, "Echo": echo})
	cli, _ := mustRPC(t, RPCOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Service.Close waits for its own handlers only.
	got := make(chan string, 2)
	go func() {
		out, err := cli.Call(ctx, addr, "a.Slow", nil)
		got <- fmt.Sprintf("%s %v", out, err)
	}()
	<-entered
	a.Close()
	if finished.Load() != 1 {
		t.Fatal("Service.Close returned before its handler")
	}
	if r := <-got; r != "late reply <nil>" {
		t.Fatalf("the closed service's last reply: %s", r)
	}
	if _, err := cli.Call(ctx, addr, "a.Echo", nil); !errors.Is(err, ErrUnknownMethod) {
		t.Fatalf("a closed service's method: %v, want ErrUnknownMethod", err)
	}
	if _, err := cli.Call(ctx, addr, "b.Echo", nil); err != nil {
		t.Fatalf("the other service after one closed: %v", err)
	}

	go func() {
		out, err := cli.Call(ctx, addr, "b.Slow", nil)
		got <- fmt.Sprintf("%s %v", out, err)
	}()
	<-entered
	srv.Close()
	if finished.Load() != 2 {
		t.Fatal("RPC.Close returned before the handler")
	}
	if r := <-got; r != "late reply <nil>" {
		t.Fatalf("the reply of a handler Close waited for: %s", r)
	}
	if _, err := cli.Call(ctx, addr, "b.Echo", nil); err == nil {
		t.Fatal("a closed endpoint answered")
	}
	if _, err := srv.Register("c", map[string]Handler{"Echo": echo}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Register after Close: %v", err)
	}
	if _, err := srv.Call(ctx, addr, "b.Echo", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Call after Close: %v", err)
	}
}

// A caller whose endpoint closes under it gets an error, not a hang.
func TestRPCCloseFailsCallsInFlight(t *testing.T) {
	leakCheck(t)
	srv, addr := mustRPC(t, RPCOptions{})
	entered := make(chan struct{}, 1)
	mustRegister(t, srv, "test", map[string]Handler{"Hang": func(ctx context.Context, _ []byte) ([]byte, error) {
		entered <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	cli, _ := mustRPC(t, RPCOptions{})
	errc := make(chan error, 1)
	go func() {
		_, err := cli.Call(context.Background(), addr, "test.Hang", nil)
		errc <- err
	}()
	<-entered
	cli.Close()
	if err := <-errc; !errors.Is(err, ErrConnLost) || !errors.Is(err, ErrClosed) {
		t.Fatalf("call in flight when its endpoint closed: %v", err)
	}
}

// BenchmarkRPCCall measures a forwarded-proposal-sized call (128 bytes each
// way) from many goroutines over one loopback connection.
func BenchmarkRPCCall(b *testing.B) {
	for _, size := range []int{128, 16 << 10} {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			srv, addr := benchRPC(b)
			if _, err := srv.Register("bench", map[string]Handler{"Echo": echo}); err != nil {
				b.Fatal(err)
			}
			cli, _ := benchRPC(b)
			payload := bytes.Repeat([]byte{'x'}, size)
			ctx := context.Background()
			if _, err := cli.Call(ctx, addr, "bench.Echo", payload); err != nil {
				b.Fatal(err)
			}
			b.SetParallelism(16)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := cli.Call(ctx, addr, "bench.Echo", payload); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func benchRPC(b *testing.B) (*RPC, string) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	m := NewMux(ln, nil, nil, nil)
	go m.Serve()
	r, err := NewRPC(m, &Dialer{}, RPCOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close(); m.Close() })
	return r, m.Addr().String()
}

// CallOwned sends the payload without copying it, large or small, and a
// payload over the frame limit is refused before anything is sent.
func TestRPCCallOwned(t *testing.T) {
	leakCheck(t)
	srv, addr := mustRPC(t, RPCOptions{MaxFrameBytes: 4 << 20})
	mustRegister(t, srv, "echo", map[string]Handler{"Echo": echo})
	cli, _ := mustRPC(t, RPCOptions{MaxFrameBytes: 4 << 20})
	for _, n := range []int{0, 10, 3 << 20} {
		p := bytes.Repeat([]byte{byte(n)}, n)
		out, err := cli.CallOwned(context.Background(), addr, "echo.Echo", p)
		if err != nil || !bytes.Equal(out, p) {
			t.Fatalf("%d bytes: %v, %d bytes back", n, err, len(out))
		}
	}
	if _, err := cli.CallOwned(context.Background(), addr, "echo.Echo", make([]byte, 4<<20)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("over the frame limit: %v, want ErrFrameTooLarge", err)
	}
}
