package materialize

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrUnsafePath reports a key that cannot be a file inside a materialized
// directory: it would escape it, or no file system could hold its name.
var ErrUnsafePath = errors.New("materialize: key cannot be a file path")

// maxNameBytes is the longest file name Linux file systems accept.
const maxNameBytes = 255

// RelPath returns the slash-separated path, relative to the materialized
// directory, of key once strip is removed from its front. It refuses, with
// an error that says why, every key that is not a plain relative path of
// ordinary names: an empty path or empty component ("a//b", a trailing
// "/"), "." and "..", a leading "/", NUL, backslashes, control characters,
// invalid UTF-8, and names longer than 255 bytes. Whatever it accepts is
// then opened through an os.Root, so a symlink on disk cannot lead a path
// outside either.
func RelPath(key, strip string) (string, error) {
	if !strings.HasPrefix(key, strip) {
		return "", fmt.Errorf("%w: %q does not start with %q", ErrUnsafePath, key, strip)
	}
	rel := key[len(strip):]
	if err := checkRel(rel); err != nil {
		return "", fmt.Errorf("%w: %q: %s", ErrUnsafePath, key, err)
	}
	return rel, nil
}

func checkRel(rel string) error {
	switch {
	case rel == "":
		return errors.New("the key names the directory itself")
	case strings.HasPrefix(rel, "/"):
		return errors.New("absolute path")
	case !utf8.ValidString(rel):
		return errors.New("not valid UTF-8")
	}
	for _, r := range rel {
		switch {
		case r == 0:
			return errors.New("NUL byte")
		case r == '\\':
			return errors.New("backslash (a path separator elsewhere)")
		case r < 0x20 || r == 0x7f:
			return errors.New("control character")
		}
	}
	for part := range strings.SplitSeq(rel, "/") {
		switch {
		case part == "":
			return errors.New("empty path component")
		case part == "." || part == "..":
			return fmt.Errorf("path component %q", part)
		case len(part) > maxNameBytes:
			return fmt.Errorf("path component longer than %d bytes", maxNameBytes)
		}
	}
	return nil
}
