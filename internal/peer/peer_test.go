package peer

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnkv/cairn/auth"
)

// testCA makes a CA and one leaf certificate signed by it, written as PEM files.
func testCA(t *testing.T, dir, name string) (certFile, keyFile, caFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + "-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile = filepath.Join(dir, name+".crt")
	keyFile = filepath.Join(dir, name+".key")
	caFile = filepath.Join(dir, name+"-ca.crt")
	write := func(p, typ string, b []byte) {
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(certFile, "CERTIFICATE", der)
	write(keyFile, "EC PRIVATE KEY", keyDER)
	write(caFile, "CERTIFICATE", caDER)
	return
}

func TestMuxRoutesByFirstByteOverMutualTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key, ca := testCA(t, dir, "good")
	srvTLS, cliTLS := peerTLS(t, cert, key, ca)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(ln, srvTLS, nil, nil)
	rpcLn := mustListen(t, m, ProtoRPC)
	go m.Serve()
	defer m.Close()
	go func() {
		for {
			c, err := rpcLn.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c) }()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	good := &Dialer{TLS: cliTLS}
	c, err := good.Dial(ctx, ln.Addr().String(), ProtoRPC)
	if err != nil {
		t.Fatalf("dial with a trusted certificate: %v", err)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q %v", buf, err)
	}
	c.Close()

	// A peer whose certificate comes from another CA cannot talk.
	ocert, okey, oca := testCA(t, dir, "other")
	_, otherTLS := peerTLS(t, ocert, okey, oca)
	bad := &Dialer{TLS: otherTLS}
	if c, err := bad.Dial(ctx, ln.Addr().String(), ProtoRPC); err == nil {
		// TLS 1.3 reports a rejected client certificate on the first read.
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write([]byte("ping"))
		if _, err := io.ReadFull(c, buf); err == nil {
			t.Fatal("a peer with a foreign CA was served")
		}
		c.Close()
	}
	// Nor can a peer without TLS.
	plain := &Dialer{}
	if c, err := plain.Dial(ctx, ln.Addr().String(), ProtoRPC); err == nil {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write([]byte("ping"))
		if n, err := io.ReadFull(c, buf); err == nil && string(buf[:n]) == "ping" {
			t.Fatal("a plaintext peer was served")
		}
		c.Close()
	}
}

func TestFaultsCutLinks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(ln, nil, nil, nil)
	vl := mustListen(t, m, ProtoRaft)
	go m.Serve()
	defer m.Close()
	go func() {
		for {
			c, err := vl.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	f := &Faults{}
	d := &Dialer{Faults: f}
	ctx := context.Background()
	c, err := d.Dial(ctx, ln.Addr().String(), ProtoRaft)
	if err != nil {
		t.Fatal(err)
	}
	f.Block(ln.Addr().String())
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("write on a cut link succeeded")
	}
	if _, err := d.Dial(ctx, ln.Addr().String(), ProtoRaft); err == nil {
		t.Fatal("dial across a partition succeeded")
	}
	// A link whose dial began before the Block and ended after it (the
	// dial's check passed, the Block saw nothing to close) is not kept: it
	// would carry traffic across the partition.
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if tc := f.track(raw, ln.Addr().String()); tc != nil {
		t.Fatal("a link that finished dialing after the Block was tracked as open")
	}
	f.Unblock(ln.Addr().String())
	if _, err := d.Dial(ctx, ln.Addr().String(), ProtoRaft); err != nil {
		t.Fatal(err)
	}
}

func peerTLS(t *testing.T, cert, key, ca string) (srv, cli *tls.Config) {
	t.Helper()
	certs, err := auth.LoadCerts(cert, key, ca)
	if err != nil {
		t.Fatal(err)
	}
	certs.CheckInterval = time.Millisecond
	srv, cli = auth.PeerTLS(certs, nil)
	return srv, cli
}

// Peer certificates and the trusted CA are rotated by replacing the files:
// the running mux serves the new certificate and trusts the new CA without a
// restart, and stops trusting the old one.
func TestPeerCertificateRotation(t *testing.T) {
	dir := t.TempDir()
	cert, key, ca := testCA(t, dir, "one")
	srvTLS, cliTLS := peerTLS(t, cert, key, ca)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(ln, srvTLS, nil, nil)
	rpcLn := mustListen(t, m, ProtoRPC)
	go m.Serve()
	defer m.Close()
	go func() {
		for {
			c, err := rpcLn.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c) }()
		}
	}()
	echo := func(conf *tls.Config) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := (&Dialer{TLS: conf}).Dial(ctx, ln.Addr().String(), ProtoRPC)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		_, err = io.ReadFull(c, buf)
		return err
	}
	if err := echo(cliTLS); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	// A peer that keeps the old CA's certificate (its own copy of the files).
	copyFile := func(src, dst string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(cert, cert+".old")
	copyFile(key, key+".old")
	copyFile(ca, ca+".old")
	_, oldCli := peerTLS(t, cert+".old", key+".old", ca+".old")
	// Rotate the server's files to a new CA and certificate.
	ncert, nkey, nca := testCA(t, dir, "two")
	for src, dst := range map[string]string{ncert: cert, nkey: key, nca: ca} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(dst+".tmp", dst); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	_, newCli := peerTLS(t, ncert, nkey, nca)
	if err := echo(newCli); err != nil {
		t.Fatalf("a peer with the new CA's certificate after rotation: %v", err)
	}
	if err := echo(oldCli); err == nil {
		t.Fatal("a peer with the old CA's certificate is still served after the CA was rotated")
	}
	// The node's own dialer picked up the new files too.
	if err := echo(cliTLS); err != nil {
		t.Fatalf("the rotated node's own dialer: %v", err)
	}
}

// With an allowed-CN pattern, a certificate from the peer CA whose CN does
// not match cannot talk to the peer port (nor be talked to).
func TestPeerAllowedCN(t *testing.T) {
	dir := t.TempDir()
	cert, key, ca := testCA(t, dir, "good")
	certs, err := auth.LoadCerts(cert, key, ca)
	if err != nil {
		t.Fatal(err)
	}
	srvTLS, _ := auth.PeerTLS(certs, regexp.MustCompile("^(?:node-[0-9]+)$"))
	_, cliTLS := auth.PeerTLS(certs, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(ln, srvTLS, nil, nil)
	rpcLn := mustListen(t, m, ProtoRPC)
	go m.Serve()
	defer m.Close()
	go func() {
		for {
			c, err := rpcLn.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c) }()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := (&Dialer{TLS: cliTLS}).Dial(ctx, ln.Addr().String(), ProtoRPC)
	if err == nil {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write([]byte("ping"))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err == nil {
			t.Fatal("a peer certificate with a CN outside peer-cert-allowed-cn was served")
		}
		c.Close()
	}
}

func mustListen(t *testing.T, m *Mux, proto byte) net.Listener {
	t.Helper()
	ln, err := m.Listen(proto, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// mustMux serves a mux on a loopback port until the test ends.
func mustMux(t *testing.T, log *slog.Logger) *Mux {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(ln, nil, nil, log)
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Serve() }()
	t.Cleanup(func() { m.Close(); <-done })
	return m
}

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestMuxRegistry(t *testing.T) {
	m := mustMux(t, nil)
	raftLn, err := m.Listen(ProtoRaft, "raft")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Listen(ProtoRaft, "other"); !errors.Is(err, ErrProtoTaken) {
		t.Fatalf("second listener on a taken byte: %v, want ErrProtoTaken", err)
	}
	if _, err := m.Listen(ProtoRPC, "rpc"); err != nil {
		t.Fatalf("a free byte: %v", err)
	}
	// Closing a listener releases its byte for the next component.
	raftLn.Close()
	if _, err := m.Listen(ProtoRaft, "raft again"); err != nil {
		t.Fatalf("a released byte: %v", err)
	}
	m.Close()
	if _, err := m.Listen(ProtoAntiEntropy, "late"); !errors.Is(err, ErrClosed) {
		t.Fatalf("listen after Close: %v, want ErrClosed", err)
	}
}

func TestMuxDropsUnknownByte(t *testing.T) {
	var logs syncBuffer
	m := mustMux(t, slog.New(slog.NewTextHandler(&logs, nil)))
	ln := mustListen(t, m, ProtoRaft)
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, b := range []byte{ProtoReplication, 0, 'G', 255} {
		c, err := (&Dialer{}).Dial(ctx, m.Addr().String(), b)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err == nil || n > 0 {
			t.Fatalf("byte %d: the connection was served (read %d, %v)", b, n, err)
		} else if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("byte %d: the connection was left open", b)
		}
		c.Close()
	}
	select {
	case c := <-accepted:
		c.Close()
		t.Fatal("a connection with another byte reached the raft listener")
	default:
	}
	if got := strings.Count(logs.String(), "unknown protocol byte"); got != 4 {
		t.Fatalf("%d warnings for 4 unknown bytes; log:\n%s", got, logs.String())
	}
}

// Nodes of two clusters never talk: the mux closes a connection whose
// cluster ID differs from its own; an unknown ID on either side passes.
func TestMuxRefusesAnotherCluster(t *testing.T) {
	var logs syncBuffer
	m := mustMux(t, slog.New(slog.NewTextHandler(&logs, nil)))
	mine := &ClusterID{}
	m.Cluster = mine
	ln := mustListen(t, m, ProtoRPC)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	served := func(id string) bool {
		t.Helper()
		d := &Dialer{Cluster: &ClusterID{}}
		if id != "" {
			d.Cluster.Set(func() string { return id })
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := d.Dial(ctx, m.Addr().String(), ProtoRPC)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return false
		}
		buf := make([]byte, 4)
		_, err = io.ReadFull(c, buf)
		return err == nil && string(buf) == "ping"
	}
	if !served("") || !served("aaaa") {
		t.Fatal("a mux that does not know its cluster ID refused a peer")
	}
	mine.Set(func() string { return "aaaa" })
	if !served("aaaa") || !served("") {
		t.Fatal("a peer of the same cluster, or one that does not know it yet, was refused")
	}
	if served("bbbb") {
		t.Fatal("a peer of another cluster was served")
	}
	if !strings.Contains(logs.String(), "another cluster") {
		t.Fatalf("the refusal was not logged: %s", logs.String())
	}
}
