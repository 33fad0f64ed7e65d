package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// respDriver speaks just enough RESP2 to send GET/SET (pipelined) and read
// the replies; it works against cairn and against Redis alike.
type respDriver struct {
	cfg     Config
	addr    string
	conn    net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	timeout time.Duration
	// broken means the stream failed (the server closed it, a timeout):
	// the next operation dials again instead of failing at once, so a
	// dropped connection costs a few errors, not millions.
	broken bool
}

func newRESPDriver(ctx context.Context, c Config, i int) (driver, error) {
	d := &respDriver{cfg: c, addr: c.Endpoints[i%len(c.Endpoints)], timeout: c.Timeout}
	if err := d.connect(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *respDriver) connect(ctx context.Context) error {
	var nd net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := nd.DialContext(dctx, "tcp", d.addr)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	d.conn, d.broken = conn, false
	d.r, d.w = bufio.NewReaderSize(conn, 64<<10), bufio.NewWriterSize(conn, 64<<10)
	if d.cfg.Password != "" {
		if err := d.command("AUTH", d.cfg.Password); err != nil {
			conn.Close()
			d.broken = true
			return err
		}
	}
	if d.cfg.Consistency == "serializable" {
		// cairn serves stale reads on connections that ask for them, as Redis
		// Cluster replicas do; Redis itself answers an error we ignore.
		_ = d.command("READONLY")
	}
	return nil
}

// fail marks the stream broken and fails every operation from i on.
func (d *respDriver) fail(errs []error, i int, err error) []error {
	d.conn.Close()
	d.broken = true
	for j := i; j < len(errs); j++ {
		errs[j] = err
	}
	return errs
}

func (d *respDriver) command(args ...string) error {
	_ = d.conn.SetDeadline(time.Now().Add(d.timeout))
	writeArray(d.w, args...)
	if err := d.w.Flush(); err != nil {
		return err
	}
	return readReply(d.r)
}

func writeArray(w *bufio.Writer, args ...string) {
	w.WriteString("*")
	w.WriteString(strconv.Itoa(len(args)))
	w.WriteString("\r\n")
	for _, a := range args {
		w.WriteString("$")
		w.WriteString(strconv.Itoa(len(a)))
		w.WriteString("\r\n")
		w.WriteString(a)
		w.WriteString("\r\n")
	}
}

func (d *respDriver) do(ctx context.Context, ops []op) []error {
	errs := make([]error, len(ops))
	if d.broken {
		if err := d.connect(ctx); err != nil {
			// Do not spin on a server that is down.
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
			for i := range errs {
				errs[i] = err
			}
			return errs
		}
	}
	_ = d.conn.SetDeadline(time.Now().Add(d.timeout))
	for _, o := range ops {
		if o.read {
			d.w.WriteString("*2\r\n$3\r\nGET\r\n$")
			d.w.WriteString(strconv.Itoa(len(o.key)))
			d.w.WriteString("\r\n")
			d.w.WriteString(o.key)
			d.w.WriteString("\r\n")
			continue
		}
		d.w.WriteString("*3\r\n$3\r\nSET\r\n$")
		d.w.WriteString(strconv.Itoa(len(o.key)))
		d.w.WriteString("\r\n")
		d.w.WriteString(o.key)
		d.w.WriteString("\r\n$")
		d.w.WriteString(strconv.Itoa(len(o.value)))
		d.w.WriteString("\r\n")
		d.w.Write(o.value)
		d.w.WriteString("\r\n")
	}
	if err := d.w.Flush(); err != nil {
		return d.fail(errs, 0, err)
	}
	for i := range ops {
		if err := readReply(d.r); err != nil {
			errs[i] = err
			var re replyError
			if !errors.As(err, &re) { // the stream is broken: fail the rest
				return d.fail(errs, i, err)
			}
		}
	}
	return errs
}

func (d *respDriver) close() { d.conn.Close() }

// replyError is an error reply (-ERR …) from the server; the stream is intact.
type replyError string

func (e replyError) Error() string { return "bench: server replied " + string(e) }

// readReply reads one complete reply and returns its error, if it is one.
func readReply(r *bufio.Reader) error {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if len(line) < 3 {
		return errors.New("bench: short reply line")
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+', ':':
		return nil
	case '-':
		return replyError(string(body))
	case '$':
		n, err := strconv.Atoi(string(body))
		if err != nil {
			return fmt.Errorf("bench: bad bulk length: %w", err)
		}
		if n < 0 {
			return nil
		}
		_, err = r.Discard(n + 2)
		return err
	case '*':
		n, err := strconv.Atoi(string(body))
		if err != nil {
			return fmt.Errorf("bench: bad array length: %w", err)
		}
		var first error
		for i := 0; i < n; i++ {
			if err := readReply(r); err != nil {
				var re replyError
				if !errors.As(err, &re) {
					return err
				}
				if first == nil {
					first = err
				}
			}
		}
		return first
	}
	return fmt.Errorf("bench: unexpected reply type %q", line[0])
}
