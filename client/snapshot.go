package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// SaveSnapshot streams the cluster's state as a snapshot file (GET
// /v1/snapshot, admin only) from the first endpoint that answers into w,
// and returns how many bytes it copied. With local, the node saves its own
// state without a quorum (GET /v1/snapshot?consistency=local): for a
// member that lost its quorum. The file ends with a checksum:
// check it (cairn snapshot status) before trusting what w holds, since a
// stream cut short is an error here only when the connection says so.
func (c *Client) SaveSnapshot(ctx context.Context, w io.Writer, local bool) (int64, error) {
	stream := *c.hc
	wait := stream.Timeout
	stream.Timeout = 0 // a large state takes as long as it takes; ctx bounds it
	var lastErr error
	for _, ep := range c.endpoints {
		// The answer must start within the client's timeout (a paused or
		// wedged node must not hold the save forever); the stream may
		// then take as long as it needs.
		actx, cancel := context.WithCancel(ctx)
		timer := time.AfterFunc(wait, cancel)
		u := ep + "/v1/snapshot"
		if local {
			u += "?consistency=local"
		}
		req, err := http.NewRequestWithContext(actx, http.MethodGet, u, nil)
		if err != nil {
			cancel()
			return 0, fmt.Errorf("client: %w", err)
		}
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := stream.Do(req)
		if err != nil || !timer.Stop() {
			cancel()
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			if err == nil {
				resp.Body.Close()
				err = fmt.Errorf("no answer within %s", wait)
			}
			lastErr = fmt.Errorf("client: %s: %w", ep, err)
			continue
		}
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			cancel()
			lastErr = apiError(&response{status: resp.StatusCode, header: resp.Header, body: body})
			if resp.StatusCode == http.StatusServiceUnavailable {
				continue
			}
			return 0, lastErr
		}
		n, err := io.Copy(w, resp.Body)
		resp.Body.Close()
		cancel()
		if err != nil {
			return n, fmt.Errorf("client: %s: the snapshot stream broke after %d bytes: %w", ep, n, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("client: every endpoint failed: %w", lastErr)
}
