package kv

import (
	"errors"
	"fmt"
	"testing"
)

// The not-found error reads exactly as the fmt.Errorf it replaces, keys
// that need escaping included, and still matches ErrKeyNotFound and its code.
func TestKeyNotFoundError(t *testing.T) {
	for _, key := range []string{"a", "files/cert.pem", "with \"quotes\"\n\x00", "ünï"} {
		err := keyNotFound(key)
		if want := fmt.Errorf("%w: %q", ErrKeyNotFound, key).Error(); err.Error() != want {
			t.Errorf("key %q: %q, want %q", key, err, want)
		}
		if !errors.Is(err, ErrKeyNotFound) || CodeOf(err) != CodeOf(ErrKeyNotFound) {
			t.Errorf("key %q: %v does not match ErrKeyNotFound", key, err)
		}
	}
}
