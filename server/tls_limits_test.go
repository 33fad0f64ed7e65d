package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/config"
	"github.com/cairnkv/cairn/test/cluster"
)

func tlsClient(t *testing.T, caFile, certFile, keyFile string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf
}

// httpsGet returns the status of GET url with conf, or the error.
func httpsGet(conf *tls.Config, url string, hdr ...string) (int, string, error) {
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: conf}}
	defer cl.CloseIdleConnections()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// TestClientTLS: with cert-file, key-file, trusted-ca-file and
// client-cert-auth, both client ports speak only TLS and only to clients
// with a valid certificate from the CA; the certificate's CN is the identity
// the ACL rules see; a certificate renewed on disk is served without a
// restart.
func TestClientTLS(t *testing.T) {
	dir := t.TempDir()
	pki := cluster.WriteCerts(t, filepath.Join(dir, "pki"), "ca", "server", "web1", "writer")
	other := cluster.WriteCerts(t, filepath.Join(dir, "other"), "otherca", "web1")
	expiredCert, expiredKey := pki.Issue(t, "web1", time.Now().Add(-time.Hour))
	// The server's files are copies, so the test can renew them in place.
	srvCert, srvKey := filepath.Join(dir, "srv.crt"), filepath.Join(dir, "srv.key")
	copyTo := func(src, dst string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+".new", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(dst+".new", dst); err != nil {
			t.Fatal(err)
		}
	}
	copyTo(pki.Cert["server"], srvCert)
	copyTo(pki.Key["server"], srvKey)
	c := cluster.New(t, 1, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.CertFile, cfg.KeyFile, cfg.TrustedCAFile, cfg.ClientCertAuth = srvCert, srvKey, pki.CAFile, true
		cfg.Auth.Rules = []auth.Rule{
			{Identity: "writer", Actions: []string{"read", "write", "admin"}},
			{Identity: "web[0-9]+", Keys: "certs/", Actions: []string{"read"}},
		}
	}})
	s := c.Running(0)
	if !strings.HasPrefix(s.ClientURL(), "https://") {
		t.Fatalf("advertised client URL %q", s.ClientURL())
	}
	base := "https://" + c.Nodes[0].ClientAddr
	writer := tlsClient(t, pki.CAFile, pki.Cert["writer"], pki.Key["writer"])
	web1 := tlsClient(t, pki.CAFile, pki.Cert["web1"], pki.Key["web1"])

	// Who may connect.
	if st, body, err := httpsGet(writer, base+"/v1/auth/whoami"); err != nil || st != 200 || !strings.Contains(body, `"identity":"writer","via":"cert"`) {
		t.Fatalf("whoami with a valid certificate: %d %s %v", st, body, err)
	}
	for name, conf := range map[string]*tls.Config{
		"no client certificate":         tlsClient(t, pki.CAFile, "", ""),
		"a certificate from another CA": tlsClient(t, pki.CAFile, other.Cert["web1"], other.Key["web1"]),
		"an expired certificate":        tlsClient(t, pki.CAFile, expiredCert, expiredKey),
	} {
		if st, _, err := httpsGet(conf, base+"/v1/kv/certs/a"); err == nil {
			t.Errorf("%s: served with %d", name, st)
		}
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + c.Nodes[0].ClientAddr + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest { // Go answers plain HTTP on a TLS port with 400
			t.Errorf("plain HTTP on the TLS port: %d", resp.StatusCode)
		}
	}
	// A header cannot claim an identity.
	if st, body, _ := httpsGet(web1, base+"/v1/auth/whoami", "X-Remote-User", "writer", "X-Forwarded-User", "writer"); st != 200 || !strings.Contains(body, `"identity":"web1"`) {
		t.Errorf("whoami with forged headers: %d %s", st, body)
	}

	// The CN is the identity the rules see (wrong CN: refused).
	put := func(conf *tls.Config, key string) int {
		cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: conf}}
		req, _ := http.NewRequest("PUT", base+"/v1/kv/"+key, strings.NewReader("pem"))
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := put(writer, "certs/a"); st != 200 {
		t.Fatalf("writer PUT certs/a: %d", st)
	}
	if st := put(web1, "certs/a"); st != 403 {
		t.Errorf("web1 PUT certs/a: %d, want 403", st)
	}
	if st, body, _ := httpsGet(web1, base+"/v1/kv/certs/a"); st != 200 || body != "pem" {
		t.Errorf("web1 GET certs/a: %d %s", st, body)
	}

	// RESP over TLS: the certificate authenticates the connection.
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: s.RESPAddr(), TLSConfig: web1, Protocol: 2, MaxRetries: -1})
	defer rc.Close()
	if v, err := rc.Get(ctx, "certs/a").Result(); err != nil || v != "pem" {
		t.Errorf("RESP GET over TLS as web1: %q %v", v, err)
	}
	if err := rc.Set(ctx, "certs/a", "x", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Errorf("RESP SET as web1: %v", err)
	}
	plain := redis.NewClient(&redis.Options{Addr: s.RESPAddr(), Protocol: 2, MaxRetries: -1, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second})
	defer plain.Close()
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Error("plain RESP accepted on the TLS port")
	}
	noCert := redis.NewClient(&redis.Options{Addr: s.RESPAddr(), TLSConfig: tlsClient(t, pki.CAFile, "", ""), Protocol: 2, MaxRetries: -1})
	defer noCert.Close()
	if err := noCert.Ping(ctx).Err(); err == nil {
		t.Error("RESP over TLS without a client certificate accepted")
	}

	// Renewal: new files, same paths, no restart.
	renewed, renewedKey := pki.Issue(t, "server-renewed", time.Now().Add(48*time.Hour))
	copyTo(renewedKey, srvKey)
	copyTo(renewed, srvCert)
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := tls.Dial("tcp", c.Nodes[0].ClientAddr, writer)
		if err == nil {
			cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName
			conn.Close()
			if cn == "server-renewed" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificate is not served: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRuntimeAuthBootstrap: an open cluster gets its first user and rules at
// run time, and a change that would lock its author out is refused.
func TestRuntimeAuthBootstrap(t *testing.T) {
	c := cluster.New(t, 1, cluster.Options{})
	u := "http://" + c.Nodes[0].ClientAddr
	if r := do(t, "PUT", u+"/v1/auth/users/root", `{"password":"rootpw"}`); r.status != 200 {
		t.Fatalf("create root in an open cluster: %d %s", r.status, r.body)
	}
	root := basicAuth("root", "rootpw")
	lockout := `{"rules":[{"identity":"someone-else","actions":["admin"]}]}`
	if r := do(t, "PUT", u+"/v1/auth/rules", lockout, "Authorization", root); r.status != 400 || !strings.Contains(r.body, "take admin away") {
		t.Fatalf("rules that lock root out: %d %s", r.status, r.body)
	}
	if r := do(t, "PUT", u+"/v1/auth/rules", `{"rules":[{"identity":"root","actions":["read","write","admin"]}]}`, "Authorization", root); r.status != 200 {
		t.Fatalf("first rules: %d %s", r.status, r.body)
	}
	if r := do(t, "PUT", u+"/v1/kv/a", "1"); r.status != 401 {
		t.Fatalf("anonymous write once rules exist: %d %s", r.status, r.body)
	}
	if r := do(t, "PUT", u+"/v1/kv/a", "1", "Authorization", root); r.status != 200 {
		t.Fatalf("root write: %d %s", r.status, r.body)
	}
	// Users and rules are in the replicated state: they survive a restart.
	c.Stop(0)
	c.Start(0)
	c.WaitReady(30 * time.Second)
	if r := do(t, "PUT", u+"/v1/kv/a", "2"); r.status != 401 {
		t.Fatalf("anonymous write after restart: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", u+"/v1/kv/a", "", "Authorization", root); r.status != 200 || r.body != "1" {
		t.Fatalf("root read after restart: %d %s", r.status, r.body)
	}
}

// TestLimits: max-inflight-requests sheds load with 429 / -BUSY,
// max-connections refuses extra connections, allowed-hosts drops strangers,
// and slow clients are cut off by the read and idle timeouts.
func TestLimits(t *testing.T) {
	c := cluster.New(t, 1, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.MaxInflightRequests = 1
		cfg.MaxConnections = 3
		cfg.ReadTimeout = 500 * time.Millisecond
		cfg.IdleTimeout = 1 * time.Second
	}})
	s := c.Running(0)
	httpAddr := c.Nodes[0].ClientAddr

	// Hold the only in-flight slot with a request whose body never ends.
	slow, err := net.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := slow.Write([]byte("PUT /v1/kv/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	r := do(t, "GET", "http://"+httpAddr+"/v1/kv/x", "")
	if r.status != 429 || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "too_many_requests") {
		t.Errorf("GET while the slot is held: %d %v %s", r.status, r.header, r.body)
	}
	if r := do(t, "GET", "http://"+httpAddr+"/healthz", ""); r.status != 200 {
		t.Errorf("health checks are not shed: %d", r.status)
	}
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: s.RESPAddr(), Protocol: 2, MaxRetries: -1, PoolSize: 1})
	defer rc.Close()
	if err := rc.Get(ctx, "x").Err(); err == nil || !strings.HasPrefix(err.Error(), "BUSY") {
		t.Errorf("RESP GET while the slot is held: %v", err)
	}
	// The slow request is cut off by the read timeout, which frees the slot.
	_ = slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(slow); err != nil && !isClosed(err) {
		t.Errorf("slow body: %v", err)
	}
	if err := rc.Get(ctx, "x").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("RESP GET after the slow client was cut off: %v", err)
	}

	// A RESP client that stops mid-command is disconnected (read timeout),
	// and so is one that stays silent (idle timeout).
	for name, partial := range map[string]string{"mid-command": "*2\r\n$3\r\nGET\r\n$1", "idle": ""} {
		conn, err := net.Dial("tcp", s.RESPAddr())
		if err != nil {
			t.Fatal(err)
		}
		if partial != "" {
			conn.Write([]byte(partial))
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		_, err = io.ReadAll(conn)
		if err != nil && !isClosed(err) {
			t.Errorf("%s: %v (after %s)", name, err, time.Since(start))
		}
		conn.Close()
	}

	// Connections over max-connections are told why and closed.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 3; i++ {
		conn, err := net.Dial("tcp", s.RESPAddr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	time.Sleep(100 * time.Millisecond)
	extra, err := net.Dial("tcp", s.RESPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_ = extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(extra).ReadString('\n')
	if !strings.HasPrefix(line, "-ERR max number of clients reached") {
		t.Errorf("connection over the limit: %q", line)
	}
}

func isClosed(err error) bool {
	return strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "closed")
}

func TestAllowedHosts(t *testing.T) {
	c := cluster.New(t, 1, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.AllowedHosts = config.StringList{"10.0.0.0/8"}
	}})
	for _, addr := range []string{c.Nodes[0].ClientAddr, c.Running(0).RESPAddr()} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			continue // refused outright is fine too
		}
		conn.Write([]byte("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"))
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(conn)
		conn.Close()
		if len(b) > 0 {
			t.Errorf("%s answered a host outside allowed-hosts: %q", addr, b)
		}
	}
}

// TestSecureJoin: with peer mTLS, client TLS and ACL rules, a new node joins
// by presenting its certificate to the member it asks (its CN needs admin);
// a node whose certificate names an identity without admin is refused.
func TestSecureJoin(t *testing.T) {
	dir := t.TempDir()
	pki := cluster.WriteCerts(t, dir, "ca", "n1", "n2", "n3", "n4", "n5")
	intruderCert, intruderKey := pki.Issue(t, "intruder", time.Now().Add(time.Hour))
	secure := func(i int, cfg *config.Config) {
		name := fmt.Sprintf("n%d", i+1)
		cfg.PeerCertFile, cfg.PeerKeyFile, cfg.PeerTrustedCAFile = pki.Cert[name], pki.Key[name], pki.CAFile
		cfg.CertFile, cfg.KeyFile, cfg.TrustedCAFile, cfg.ClientCertAuth = pki.Cert[name], pki.Key[name], pki.CAFile, true
		cfg.Auth.Rules = []auth.Rule{{Identity: "n[0-9]+", Actions: []string{"read", "write", "admin"}}}
	}
	c := cluster.New(t, 3, cluster.Options{Configure: secure})
	i := c.StartJoiner(0, false, func(cfg *config.Config) { cfg.Join = "https://" + c.Nodes[0].ClientAddr })
	c.WaitReady(30 * time.Second)
	bad := c.StartJoiner(0, false, func(cfg *config.Config) {
		cfg.Join = "https://" + c.Nodes[0].ClientAddr
		cfg.CertFile, cfg.KeyFile = intruderCert, intruderKey
	})
	select {
	case <-c.Nodes[bad].S.Ready():
		t.Fatal("a node without admin joined")
	case <-time.After(3 * time.Second):
	}
	ms, err := c.Svc(0).Members(auth.WithIdentity(context.Background(), auth.System))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.Name)
	}
	if len(ms) != 4 || !strings.Contains(strings.Join(names, ","), c.Nodes[i].Name) {
		t.Fatalf("members after the joins: %v", names)
	}
}
