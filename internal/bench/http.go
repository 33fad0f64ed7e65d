package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// newTransport returns the transport all HTTP clients of a run share: Conns
// connections per endpoint (one per client when Conns is 0).
func newTransport(c Config) *http.Transport {
	conns := c.Conns
	if conns <= 0 {
		conns = c.Clients
	}
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns * len(c.Endpoints),
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     time.Minute,
	}
}

type httpDriver struct {
	client *http.Client
	base   string
	serial bool
}

func newHTTPDriver(c Config, t *http.Transport, i int) (driver, error) {
	base := strings.TrimRight(c.Endpoints[i%len(c.Endpoints)], "/")
	if _, err := url.Parse(base); err != nil || !strings.HasPrefix(base, "http") {
		return nil, fmt.Errorf("bench: endpoint %q is not an http(s) URL", base)
	}
	return &httpDriver{
		client: &http.Client{Transport: t, Timeout: c.Timeout},
		base:   base,
		serial: c.Consistency == "serializable",
	}, nil
}

func (d *httpDriver) do(ctx context.Context, ops []op) []error {
	errs := make([]error, len(ops))
	for i, o := range ops {
		errs[i] = d.one(ctx, o)
	}
	return errs
}

func (d *httpDriver) one(ctx context.Context, o op) error {
	u := d.base + "/v1/kv/" + o.key
	var req *http.Request
	var err error
	if o.read {
		if d.serial {
			u += "?consistency=serializable"
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(o.value))
	}
	if err != nil {
		return err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// A read of a key not written yet is a successful read.
	if resp.StatusCode/100 != 2 && !(o.read && resp.StatusCode == http.StatusNotFound) {
		return fmt.Errorf("bench: %s %s: %s", req.Method, o.key, resp.Status)
	}
	return nil
}

func (d *httpDriver) close() {}
