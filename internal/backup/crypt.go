package backup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"

	"github.com/cairnkv/cairn/internal/backup/snapfile"
)

// Encrypted backups: a snapshot file sealed for one or more age recipients
// (X25519 public keys, "age1…"), so the target (a bucket, a shared mount)
// never holds plaintext. The file is the age format around the snapshot
// file; reading it takes an identity file with a matching private key
// ("AGE-SECRET-KEY-1…", as age-keygen writes). The snapshot inside keeps
// its own checksum, checked as usual once decrypted.

// ErrEncrypted is a snapshot that is encrypted, read without an identity.
var ErrEncrypted = errors.New("backup: the snapshot is encrypted (age): give the identity file that decrypts it (--identity)")

// ageHeader starts every binary age file.
var ageHeader = []byte("age-encryption.org/v1\n")

// ParseRecipients reads comma- or space-separated age recipients.
func ParseRecipients(s string) ([]age.Recipient, error) {
	var out []age.Recipient
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
		r, err := age.ParseX25519Recipient(f)
		if err != nil {
			return nil, fmt.Errorf("backup: encryption recipient %q: %w", f, err)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("backup: no encryption recipient in %q", s)
	}
	return out, nil
}

// LoadIdentities reads an age identity file.
func LoadIdentities(path string) ([]age.Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("backup: identity file: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("backup: identity file %s: %w", path, err)
	}
	return ids, nil
}

// Encrypt returns a writer that seals what is written to it for
// recipients into w; Close finishes the file (w stays open).
func Encrypt(w io.Writer, recipients []age.Recipient) (io.WriteCloser, error) {
	return age.Encrypt(w, recipients...)
}

// plaintext returns the snapshot stream of r, decrypting it with ids when
// it is an age file.
func plaintext(r io.Reader, ids []age.Identity) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	head, _ := br.Peek(len(ageHeader))
	if !bytes.Equal(head, ageHeader) {
		return br, nil
	}
	if len(ids) == 0 {
		return nil, ErrEncrypted
	}
	pr, err := age.Decrypt(br, ids...)
	if err != nil {
		return nil, fmt.Errorf("backup: decrypting the snapshot: %w", err)
	}
	return pr, nil
}

// openPlain opens the file at path as a snapshot stream.
func openPlain(path string, ids []age.Identity) (io.Reader, io.Closer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("backup: %w", err)
	}
	r, err := plaintext(f, ids)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return r, f, nil
}

// VerifyStream checks a snapshot stream (decrypting it with ids if it is
// encrypted) and returns its Info.
func VerifyStream(r io.Reader, ids ...age.Identity) (snapfile.Info, error) {
	pr, err := plaintext(r, ids)
	if err != nil {
		return snapfile.Info{}, err
	}
	return snapfile.Verify(pr)
}
