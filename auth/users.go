package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode"

	"golang.org/x/crypto/bcrypt"
)

// ErrBadCredentials is returned for a wrong user, password or token; it never
// says which of them was wrong.
var ErrBadCredentials = errors.New("auth: wrong user name, password or token")

// User is an identity with a password and/or bearer tokens. Only hashes are
// stored: bcrypt for passwords (slow on purpose, as passwords are guessable),
// SHA-256 for tokens (they are 192 random bits, so a fast hash is enough and
// lets every HTTP request carry one).
type User struct {
	Name         string  `json:"name" yaml:"name"`
	PasswordHash string  `json:"password_hash,omitempty" yaml:"password_hash"`
	Tokens       []Token `json:"tokens,omitempty" yaml:"tokens"`
}

// Token is a bearer token's public part.
type Token struct {
	ID     string `json:"id" yaml:"id"`
	SHA256 string `json:"sha256" yaml:"sha256"` // hex SHA-256 of the token
}

// BcryptCost is the cost of new password hashes.
const BcryptCost = 10

// MaxPasswordBytes is bcrypt's limit.
const MaxPasswordBytes = 72

// HashPassword returns the bcrypt hash of password.
func HashPassword(password string) (string, error) {
	if password == "" {
		return "", fmt.Errorf("%w: empty password", ErrInvalid)
	}
	if len(password) > MaxPasswordBytes {
		return "", fmt.Errorf("%w: password longer than %d bytes", ErrInvalid, MaxPasswordBytes)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), BcryptCost)
	if err != nil {
		return "", fmt.Errorf("auth: hash password: %w", err)
	}
	return string(h), nil
}

// NewToken returns a fresh bearer token and its public part.
func NewToken() (token string, t Token, err error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", t, err
	}
	var id [6]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", t, err
	}
	token = "cairn_" + base64.RawURLEncoding.EncodeToString(b[:])
	return token, Token{ID: hex.EncodeToString(id[:]), SHA256: TokenHash(token)}, nil
}

// TokenHash is the hex SHA-256 of a token.
func TokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// ValidateName checks a user name: 1-128 printable characters, no colon
// (HTTP Basic splits on it), no whitespace, not starting with "cairn:".
func ValidateName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("%w: user name must be 1-128 bytes", ErrInvalid)
	}
	if strings.HasPrefix(name, "cairn:") {
		return fmt.Errorf("%w: user names starting with cairn: are reserved", ErrInvalid)
	}
	for _, r := range name {
		if r == ':' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("%w: user name %q: no colons, spaces or control characters", ErrInvalid, name)
		}
	}
	return nil
}

// Validate checks a user definition.
func (u *User) Validate() error {
	if err := ValidateName(u.Name); err != nil {
		return err
	}
	if u.PasswordHash != "" {
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			return fmt.Errorf("%w: user %s: password_hash is not a bcrypt hash (make one with `cairn auth hash-password`)", ErrInvalid, u.Name)
		}
	}
	seen := map[string]bool{}
	for _, t := range u.Tokens {
		if t.ID == "" || seen[t.ID] {
			return fmt.Errorf("%w: user %s: every token needs a distinct id", ErrInvalid, u.Name)
		}
		seen[t.ID] = true
		if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("%w: user %s: token %s: sha256 must be 64 hex digits", ErrInvalid, u.Name, t.ID)
		}
	}
	return nil
}

// Directory answers "who is this" for passwords and tokens. It is immutable;
// a change of users builds a new one that shares the password cache.
type Directory struct {
	users   map[string]*User
	byToken map[string]string // token hash -> user
	cache   *PasswordCache
}

// NewDirectory builds a directory from layers of users (the config file's,
// then the replicated ones); a name may appear only once.
func NewDirectory(cache *PasswordCache, layers ...[]User) (*Directory, error) {
	d := &Directory{users: map[string]*User{}, byToken: map[string]string{}, cache: cache}
	for _, layer := range layers {
		for i := range layer {
			u := &layer[i]
			if err := u.Validate(); err != nil {
				return nil, err
			}
			if _, dup := d.users[u.Name]; dup {
				return nil, fmt.Errorf("%w: user %s is defined twice", ErrInvalid, u.Name)
			}
			d.users[u.Name] = u
			for _, t := range u.Tokens {
				d.byToken[strings.ToLower(t.SHA256)] = u.Name
			}
		}
	}
	return d, nil
}

// Has reports whether a user exists.
func (d *Directory) Has(name string) bool { _, ok := d.users[name]; return ok }

// Password checks a user's password.
func (d *Directory) Password(name, password string) (Identity, error) {
	u, ok := d.users[name]
	if !ok || u.PasswordHash == "" || len(password) > MaxPasswordBytes {
		// Spend the same time as a real check, so user names cannot be probed.
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return Identity{}, ErrBadCredentials
	}
	if d.cache != nil && d.cache.hit(name, u.PasswordHash, password) {
		return Identity{Name: name, Via: "password"}, nil
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) != nil {
		return Identity{}, ErrBadCredentials
	}
	if d.cache != nil {
		d.cache.put(name, u.PasswordHash, password)
	}
	return Identity{Name: name, Via: "password"}, nil
}

// Token checks a bearer token.
func (d *Directory) Token(token string) (Identity, error) {
	name, ok := d.byToken[TokenHash(token)]
	if !ok {
		return Identity{}, ErrBadCredentials
	}
	return Identity{Name: name, Via: "token"}, nil
}

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("cairn-dummy"), BcryptCost)

// PasswordCache remembers passwords that were verified lately (as a keyed
// SHA-256, per user and bcrypt hash), so HTTP Basic, which sends the password
// with every request, pays bcrypt once and not per request. A password change
// changes the hash and so misses the cache.
type PasswordCache struct {
	mu  sync.Mutex
	key [32]byte
	m   map[string][32]byte // user + "\x00" + bcrypt hash -> H(key, password)
}

const passwordCacheMax = 10000

// NewPasswordCache returns an empty cache with a random key.
func NewPasswordCache() *PasswordCache {
	c := &PasswordCache{m: map[string][32]byte{}}
	_, _ = rand.Read(c.key[:])
	return c
}

func (c *PasswordCache) sum(password string) [32]byte {
	h := sha256.New()
	h.Write(c.key[:])
	h.Write([]byte(password))
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

func (c *PasswordCache) hit(user, hash, password string) bool {
	sum := c.sum(password)
	c.mu.Lock()
	want, ok := c.m[user+"\x00"+hash]
	c.mu.Unlock()
	return ok && subtle.ConstantTimeCompare(want[:], sum[:]) == 1
}

func (c *PasswordCache) put(user, hash, password string) {
	sum := c.sum(password)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= passwordCacheMax {
		clear(c.m)
	}
	c.m[user+"\x00"+hash] = sum
}
