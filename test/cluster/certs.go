package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certs are PEM files made by WriteCerts: one CA and a certificate per name,
// valid for 127.0.0.1 and usable as both server and client certificate.
type Certs struct {
	CAFile string
	Cert   map[string]string
	Key    map[string]string

	dir, caName string
	caCert      *x509.Certificate
	caKey       *ecdsa.PrivateKey
	serial      int64
}

// WriteCerts creates a CA called caName and one certificate per name in dir.
func WriteCerts(t testing.TB, dir, caName string, names ...string) *Certs {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: caName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	out := Certs{CAFile: filepath.Join(dir, caName+".crt"), Cert: map[string]string{}, Key: map[string]string{},
		dir: dir, caName: caName, caCert: caCert, caKey: caKey, serial: 1}
	writePEM(t, out.CAFile, "CERTIFICATE", caDER)
	for _, name := range names {
		out.Cert[name], out.Key[name] = out.Issue(t, name, time.Now().Add(24*time.Hour))
	}
	return &out
}

// Issue signs a new certificate for the common name cn, valid until
// notAfter (a time in the past makes an expired certificate), and returns
// its files. Each call writes new files.
func (c *Certs) Issue(t testing.TB, cn string, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	c.serial++
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(c.serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-48 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost", cn},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.caCert, &key.PublicKey, c.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	base := filepath.Join(c.dir, fmt.Sprintf("%s-%s-%d", c.caName, cn, c.serial))
	writePEM(t, base+".crt", "CERTIFICATE", der)
	writePEM(t, base+".key", "EC PRIVATE KEY", keyDER)
	return base + ".crt", base + ".key"
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
