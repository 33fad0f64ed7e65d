package auth

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Action is what an identity wants to do.
type Action uint8

// Actions.
const (
	Read Action = 1 << iota
	Write
	Admin
	// Metrics is reading the node's Prometheus metrics (/metrics), which
	// names no key: a monitoring identity needs it and nothing else. Admin
	// implies it (see AllowMetrics).
	Metrics
)

func (a Action) String() string {
	var parts []string
	for _, x := range []struct {
		a Action
		n string
	}{{Read, "read"}, {Write, "write"}, {Admin, "admin"}, {Metrics, "metrics"}} {
		if a&x.a != 0 {
			parts = append(parts, x.n)
		}
	}
	return strings.Join(parts, "+")
}

// ErrInvalid wraps every error about a malformed rule, user or credential.
var ErrInvalid = errors.New("auth: invalid")

// Rule is one ACL entry as written in the config file or sent to the admin
// API. See the package documentation for how rules are evaluated.
type Rule struct {
	// Identity is a regex that must match the whole identity name; ".*"
	// matches everyone including anonymous clients.
	Identity string `json:"identity" yaml:"identity"`
	// Keys is a key prefix; "" means every key.
	Keys string `json:"keys,omitempty" yaml:"keys"`
	// KeysRegex, instead of Keys, is a regex that must match the whole key.
	KeysRegex string `json:"keys_regex,omitempty" yaml:"keys_regex"`
	// Actions lists "read", "write", "admin" and "metrics".
	Actions []string `json:"actions" yaml:"actions"`
	// Effect is "allow" (the default) or "deny".
	Effect string `json:"effect,omitempty" yaml:"effect"`
}

const maxRules = 10000

type compiledRule struct {
	identity *regexp.Regexp
	prefix   string
	keys     *regexp.Regexp // nil: prefix rule
	actions  Action
	deny     bool
}

// Policy is a compiled, ordered rule list. The zero Policy (and nil) allows
// everything: no rules configured.
type Policy struct {
	rules []compiledRule
}

func anchored(re string) (*regexp.Regexp, error) {
	return regexp.Compile("^(?:" + re + ")$")
}

// Compile checks and compiles rules, in order.
func Compile(rules []Rule) (*Policy, error) {
	if len(rules) > maxRules {
		return nil, fmt.Errorf("%w: %d rules, at most %d", ErrInvalid, len(rules), maxRules)
	}
	p := &Policy{rules: make([]compiledRule, 0, len(rules))}
	for i, r := range rules {
		c, err := compileRule(r)
		if err != nil {
			return nil, fmt.Errorf("rule %d: %w", i+1, err)
		}
		p.rules = append(p.rules, c)
	}
	return p, nil
}

func compileRule(r Rule) (compiledRule, error) {
	var c compiledRule
	if r.Identity == "" {
		return c, fmt.Errorf(`%w: identity is required (".*" for everyone, ".+" for every authenticated identity)`, ErrInvalid)
	}
	var err error
	if c.identity, err = anonCompile(r.Identity); err != nil {
		return c, fmt.Errorf("%w: identity regex: %v", ErrInvalid, err)
	}
	if r.Keys != "" && r.KeysRegex != "" {
		return c, fmt.Errorf("%w: give keys (a prefix) or keys_regex, not both", ErrInvalid)
	}
	c.prefix = r.Keys
	if r.KeysRegex != "" {
		if c.keys, err = anchored(r.KeysRegex); err != nil {
			return c, fmt.Errorf("%w: keys_regex: %v", ErrInvalid, err)
		}
	}
	if len(r.Actions) == 0 {
		return c, fmt.Errorf("%w: actions are required (read, write, admin, metrics)", ErrInvalid)
	}
	for _, a := range r.Actions {
		act, err := ParseAction(a)
		if err != nil {
			return c, err
		}
		c.actions |= act
	}
	switch strings.ToLower(r.Effect) {
	case "", "allow":
	case "deny":
		c.deny = true
	default:
		return c, fmt.Errorf("%w: effect %q: want allow or deny", ErrInvalid, r.Effect)
	}
	return c, nil
}

func anonCompile(re string) (*regexp.Regexp, error) {
	if len(re) > 4096 {
		return nil, errors.New("longer than 4096 bytes")
	}
	return anchored(re)
}

// ParseAction parses "read", "write", "admin" or "metrics".
func ParseAction(s string) (Action, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "read":
		return Read, nil
	case "write":
		return Write, nil
	case "admin":
		return Admin, nil
	case "metrics":
		return Metrics, nil
	}
	return 0, fmt.Errorf("%w: action %q: want read, write, admin or metrics", ErrInvalid, s)
}

// Open reports whether the policy has no rules (everything allowed).
func (p *Policy) Open() bool { return p == nil || len(p.rules) == 0 }

// Allow reports whether id may do every action in a on key.
func (p *Policy) Allow(id Identity, a Action, key string) bool {
	if p.Open() || id.Via == "system" {
		return true
	}
	for bit := Read; bit <= Metrics; bit <<= 1 {
		if a&bit != 0 && !p.allow1(id, bit, key) {
			return false
		}
	}
	return true
}

func (p *Policy) allow1(id Identity, a Action, key string) bool {
	for _, r := range p.rules {
		if r.actions&a == 0 || !r.identity.MatchString(id.Name) {
			continue
		}
		if a&(Admin|Metrics) == 0 && !r.matchesKey(key) {
			continue
		}
		return !r.deny
	}
	return false
}

func (r *compiledRule) matchesKey(key string) bool {
	if r.keys != nil {
		return r.keys.MatchString(key)
	}
	return strings.HasPrefix(key, r.prefix)
}

// AllowAdmin reports whether id may do admin actions.
func (p *Policy) AllowAdmin(id Identity) bool { return p.Allow(id, Admin, "") }

// AllowMetrics reports whether id may read the metrics: an admin, or an
// identity a rule gives the metrics action.
func (p *Policy) AllowMetrics(id Identity) bool {
	return p.Allow(id, Metrics, "") || p.AllowAdmin(id)
}

// AllowRange reports whether id may do a on every key that starts with prefix.
func (p *Policy) AllowRange(id Identity, a Action, prefix string) bool {
	if p.Open() || id.Via == "system" {
		return true
	}
	for bit := Read; bit <= Write; bit <<= 1 {
		if a&bit != 0 && !p.allowRange1(id, bit, prefix) {
			return false
		}
	}
	return true
}

func (p *Policy) allowRange1(id Identity, a Action, prefix string) bool {
	for _, r := range p.rules {
		if r.actions&a == 0 || !r.identity.MatchString(id.Name) {
			continue
		}
		switch {
		case r.keys != nil:
			// Cannot prove a regex covers the range; it may touch it.
			if r.deny {
				return false
			}
		case strings.HasPrefix(prefix, r.prefix):
			return !r.deny // covers the whole range
		case strings.HasPrefix(r.prefix, prefix):
			if r.deny {
				return false // denies part of the range
			}
		}
	}
	return false
}
