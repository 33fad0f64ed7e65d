package keyspace

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Materialize says that, and how, the keys under a prefix are written as
// files into a directory on each node (package internal/materialize does
// it). In a policy it applies to every node; a node's own list (the
// config's materialize:, --materialize PREFIX=DIR) overrides it there,
// or materializes a prefix the policy does not.
type Materialize struct {
	// Prefix is the prefix materialized; only in a node's own list (a
	// policy's is the policy's prefix).
	Prefix string
	Dir    string
	// FileMode and DirMode are the files' and directories' permissions
	// (0: 0644 and 0755).
	FileMode, DirMode fs.FileMode
	// StripPrefix is cut from each key to make its path (default: the
	// prefix): key certs/a/b.pem with prefix certs/ is DIR/a/b.pem.
	StripPrefix string
	// OnChange is the command run after changes are published: its argv,
	// run without a shell (give ["sh", "-c", "..."] for one).
	OnChange    []string
	Debounce    time.Duration
	HookTimeout time.Duration
}

// materializeJSON is Materialize as people write it (JSON and YAML):
// modes as octal strings, durations as Go duration strings, on_change as
// a list or as one string split into words (quotes group, no shell).
type materializeJSON struct {
	Prefix      string `json:"prefix,omitempty" yaml:"prefix"`
	Dir         string `json:"dir" yaml:"dir"`
	FileMode    string `json:"file_mode,omitempty" yaml:"file_mode"`
	DirMode     string `json:"dir_mode,omitempty" yaml:"dir_mode"`
	StripPrefix string `json:"strip_prefix,omitempty" yaml:"strip_prefix"`
	OnChange    any    `json:"on_change,omitempty" yaml:"on_change"`
	Debounce    string `json:"debounce,omitempty" yaml:"debounce"`
	HookTimeout string `json:"hook_timeout,omitempty" yaml:"hook_timeout"`
}

// MarshalJSON writes the people's form.
func (m Materialize) MarshalJSON() ([]byte, error) {
	j := materializeJSON{Prefix: m.Prefix, Dir: m.Dir, StripPrefix: m.StripPrefix}
	if m.FileMode != 0 {
		j.FileMode = fmt.Sprintf("%#o", m.FileMode)
	}
	if m.DirMode != 0 {
		j.DirMode = fmt.Sprintf("%#o", m.DirMode)
	}
	if len(m.OnChange) > 0 {
		j.OnChange = m.OnChange
	}
	if m.Debounce != 0 {
		j.Debounce = m.Debounce.String()
	}
	if m.HookTimeout != 0 {
		j.HookTimeout = m.HookTimeout.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the people's form, ignoring fields it does not know
// (as Policy.UnmarshalJSON does, for the log's sake).
func (m *Materialize) UnmarshalJSON(b []byte) error {
	out, err := decodeMaterialize(b, false)
	if err != nil {
		return err
	}
	*m = out
	return nil
}

// decodeMaterialize reads the JSON form; strict refuses unknown fields.
func decodeMaterialize(b []byte, strict bool) (Materialize, error) {
	var j materializeJSON
	d := json.NewDecoder(bytes.NewReader(b))
	if strict {
		d.DisallowUnknownFields()
	}
	if err := d.Decode(&j); err != nil {
		return Materialize{}, fmt.Errorf("%w: materialize: %w", ErrInvalidPolicy, err)
	}
	return j.materialize()
}

// UnmarshalYAML reads the same fields from the config file.
func (m *Materialize) UnmarshalYAML(unmarshal func(any) error) error {
	var j materializeJSON
	if err := unmarshal(&j); err != nil {
		return err
	}
	out, err := j.materialize()
	if err != nil {
		return err
	}
	*m = out
	return nil
}

func (j materializeJSON) materialize() (Materialize, error) {
	m := Materialize{Prefix: j.Prefix, Dir: j.Dir, StripPrefix: j.StripPrefix}
	var err error
	if m.FileMode, err = parseMode("file_mode", j.FileMode); err != nil {
		return Materialize{}, err
	}
	if m.DirMode, err = parseMode("dir_mode", j.DirMode); err != nil {
		return Materialize{}, err
	}
	if m.Debounce, err = parseDuration("debounce", j.Debounce); err != nil {
		return Materialize{}, err
	}
	if m.HookTimeout, err = parseDuration("hook_timeout", j.HookTimeout); err != nil {
		return Materialize{}, err
	}
	switch c := j.OnChange.(type) {
	case nil:
	case string:
		if m.OnChange, err = SplitCommand(c); err != nil {
			return Materialize{}, err
		}
	case []any:
		for _, a := range c {
			s, ok := a.(string)
			if !ok {
				return Materialize{}, fmt.Errorf("%w: materialize: on_change must be a string or a list of strings", ErrInvalidPolicy)
			}
			m.OnChange = append(m.OnChange, s)
		}
	default:
		return Materialize{}, fmt.Errorf("%w: materialize: on_change must be a string or a list of strings", ErrInvalidPolicy)
	}
	return m, m.Validate()
}

// Validate checks m on its own.
func (m Materialize) Validate() error {
	switch {
	case m.Dir == "" || !strings.HasPrefix(m.Dir, "/"):
		return fmt.Errorf("%w: materialize: dir %q is not an absolute path", ErrInvalidPolicy, m.Dir)
	case strings.IndexByte(m.Dir, 0) >= 0:
		return fmt.Errorf("%w: materialize: dir contains a NUL byte", ErrInvalidPolicy)
	case m.StripPrefix != "" && m.Prefix != "" && !strings.HasPrefix(m.Prefix, m.StripPrefix):
		return fmt.Errorf("%w: materialize: strip_prefix %q is not a prefix of %q", ErrInvalidPolicy, m.StripPrefix, m.Prefix)
	case m.Debounce < 0 || m.HookTimeout < 0:
		return fmt.Errorf("%w: materialize: negative debounce or hook_timeout", ErrInvalidPolicy)
	case len(m.OnChange) > 0 && m.OnChange[0] == "":
		return fmt.Errorf("%w: materialize: on_change has an empty command", ErrInvalidPolicy)
	}
	return nil
}

func parseMode(field, s string) (fs.FileMode, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0"), 8, 32)
	if err != nil || n > 0o777 || n == 0 {
		return 0, fmt.Errorf("%w: materialize: %s %q (want permission bits in octal, such as \"0644\")", ErrInvalidPolicy, field, s)
	}
	return fs.FileMode(n), nil
}

func parseDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%w: materialize: %s %q (want a duration such as \"2s\")", ErrInvalidPolicy, field, s)
	}
	return d, nil
}

// SplitCommand splits a command line into words as a shell would split
// plain words: blanks separate, single and double quotes group, a
// backslash escapes the next character. Nothing else a shell does happens
// (no variables, globs, pipes or redirections).
func SplitCommand(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
		quote rune
		esc   bool
	)
	for _, r := range s {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case r == '\\' && quote != '\'':
			esc, in = true, true
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case unicode.IsSpace(r):
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 || esc {
		return nil, fmt.Errorf("%w: materialize: on_change %q has an unterminated quote or escape", ErrInvalidPolicy, s)
	}
	if in {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("%w: materialize: on_change is empty", ErrInvalidPolicy)
	}
	return words, nil
}

// Equal reports whether p and o are the same policy.
func (p Policy) Equal(o Policy) bool { return reflect.DeepEqual(p, o) }
