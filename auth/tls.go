package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sync"
	"time"
)

// Certs holds a certificate, its key and optionally a trusted CA bundle loaded
// from files, and reloads them when the files change: certificates are renewed
// by automation (certbot, cert-manager, a cron job) and a node must pick the
// new ones up without a restart.
//
// Changes are found by comparing each file's size and modification time at
// most once per CheckInterval, on the next handshake. That also catches the
// atomic rename and symlink swaps renewal tools do, which file-watch APIs
// (fsnotify) lose when the watched inode goes away. A reload that fails (a
// half-written file, a key that does not match) keeps the previous pair and
// is retried at the next check, so a botched renewal never takes a port down.
type Certs struct {
	certFile, keyFile, caFile string
	// CheckInterval bounds how often the files are stat'ed; default 1 s.
	CheckInterval time.Duration
	// OnError, if set, is told about reloads that failed.
	OnError func(error)

	mu        sync.Mutex
	checked   time.Time
	stamp     string
	cert      *tls.Certificate
	pool      *x509.CertPool
	lastError error
}

// LoadCerts reads the files once (an error here is a configuration error) and
// returns a reloading holder. caFile may be empty.
func LoadCerts(certFile, keyFile, caFile string) (*Certs, error) {
	c := &Certs{certFile: certFile, keyFile: keyFile, caFile: caFile, CheckInterval: time.Second}
	stamp, err := c.stampFiles()
	if err != nil {
		return nil, err
	}
	if err := c.load(stamp); err != nil {
		return nil, err
	}
	c.checked = time.Now()
	return c, nil
}

func (c *Certs) files() []string {
	fs := []string{c.certFile, c.keyFile}
	if c.caFile != "" {
		fs = append(fs, c.caFile)
	}
	return fs
}

func (c *Certs) stampFiles() (string, error) {
	var s string
	for _, f := range c.files() {
		fi, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("auth: %w", err)
		}
		s += fmt.Sprintf("%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
	}
	return s, nil
}

func (c *Certs) load(stamp string) error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("auth: load certificate %s: %w", c.certFile, err)
	}
	var pool *x509.CertPool
	if c.caFile != "" {
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			return fmt.Errorf("auth: read trusted CA: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("auth: no certificates found in %s", c.caFile)
		}
	}
	c.cert, c.pool, c.stamp = &cert, pool, stamp
	return nil
}

// current returns the newest good certificate and CA pool.
func (c *Certs) current() (*tls.Certificate, *x509.CertPool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	iv := c.CheckInterval
	if iv <= 0 {
		iv = time.Second
	}
	if time.Since(c.checked) >= iv {
		c.checked = time.Now()
		stamp, err := c.stampFiles()
		if err == nil && stamp != c.stamp {
			err = c.load(stamp)
		}
		if err != nil && (c.lastError == nil || err.Error() != c.lastError.Error()) && c.OnError != nil {
			c.OnError(err)
		}
		c.lastError = err
	}
	return c.cert, c.pool
}

// Certificate is the current certificate and key.
func (c *Certs) Certificate() *tls.Certificate {
	cert, _ := c.current()
	return cert
}

// Leaf is the current certificate, parsed.
func (c *Certs) Leaf() *x509.Certificate {
	cert, _ := c.current()
	if cert.Leaf != nil {
		return cert.Leaf
	}
	l, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil
	}
	return l
}

// ServerTLS is the tls.Config of a client-facing port (HTTP or RESP). With a
// CA, client certificates signed by it are verified when presented, and
// required when requireClientCert is set; their CN becomes the connection's
// identity. nextProtos are the ALPN protocols offered ("http/1.1" for HTTP).
func ServerTLS(c *Certs, requireClientCert bool, nextProtos ...string) *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, pool := c.current()
		conf := &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{*cert},
			NextProtos:   nextProtos,
		}
		if pool != nil {
			conf.ClientCAs = pool
			conf.ClientAuth = tls.VerifyClientCertIfGiven
			if requireClientCert {
				conf.ClientAuth = tls.RequireAndVerifyClientCert
			}
		}
		return conf, nil
	}
	return base
}

// PeerTLS is the peer port's pair of configurations: client certificates are
// required and verified against the CA on the server side, the server's chain
// is verified against the CA on the client side (peers are addressed by
// host:port, and their certificates may name any host, so the name is not
// checked). Both sides use the newest certificate and CA on disk, so peer
// certificates rotate without restarts.
//
// allowedCN, when not nil, must match the whole CN of the other side's
// certificate (etcd's --peer-cert-allowed-cn): with a CA that also signs
// client certificates, only node certificates can talk Raft.
func PeerTLS(c *Certs, allowedCN *regexp.Regexp) (server, client *tls.Config) {
	checkCN := func(cs tls.ConnectionState) error {
		if allowedCN == nil {
			return nil
		}
		if len(cs.PeerCertificates) == 0 {
			return errors.New("auth: no peer certificate")
		}
		if cn := cs.PeerCertificates[0].Subject.CommonName; !allowedCN.MatchString(cn) {
			return fmt.Errorf("auth: peer certificate CN %q is not allowed (peer-cert-allowed-cn)", cn)
		}
		return nil
	}
	server = &tls.Config{MinVersion: tls.VersionTLS12}
	server.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, pool := c.current()
		return &tls.Config{
			MinVersion:       tls.VersionTLS12,
			Certificates:     []tls.Certificate{*cert},
			ClientAuth:       tls.RequireAndVerifyClientCert,
			ClientCAs:        pool,
			VerifyConnection: checkCN,
		}, nil
	}
	client = &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := c.current()
			return cert, nil
		},
		InsecureSkipVerify: true, //nolint:gosec // chain verified in VerifyPeerCertificate
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, pool := c.current()
			return VerifyChain(raw, pool)
		},
		VerifyConnection: checkCN,
	}
	return server, client
}

// VerifyChain verifies a raw certificate chain against roots, for any key usage.
func VerifyChain(raw [][]byte, roots *x509.CertPool) error {
	if len(raw) == 0 {
		return errors.New("auth: no certificate presented")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return fmt.Errorf("auth: bad certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("auth: certificate not trusted: %w", err)
	}
	return nil
}

// PeerIdentity returns the CN of a verified client certificate on conn, or
// "" when the connection is not TLS or presented no verified certificate.
// Only a direct TLS connection counts: nothing a proxy could write into a
// request (headers) is ever used as an identity.
func PeerIdentity(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	return cs.VerifiedChains[0][0].Subject.CommonName
}
