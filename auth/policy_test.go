package auth

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func mustCompile(t *testing.T, rules ...Rule) *Policy {
	t.Helper()
	p, err := Compile(rules)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func user(n string) Identity { return Identity{Name: n, Via: "password"} }

func TestNoRulesAllowsEverything(t *testing.T) {
	var p *Policy
	if !p.Allow(Anonymous, Read|Write|Admin, "x") || !p.AllowRange(Anonymous, Write, "") || !p.Open() {
		t.Fatal("no rules must allow everything")
	}
	if !mustCompile(t).AllowAdmin(Anonymous) {
		t.Fatal("an empty rule list must allow everything")
	}
}

func TestRuleEvaluation(t *testing.T) {
	p := mustCompile(t,
		Rule{Identity: ".*", Keys: "app/secret/", Actions: []string{"read", "write"}, Effect: "deny"},
		Rule{Identity: "admin", Actions: []string{"read", "write", "admin"}},
		Rule{Identity: "writer|job-[0-9]+", Keys: "app/", Actions: []string{"read", "write"}},
		Rule{Identity: "web[0-9]", Keys: "app/", Actions: []string{"read"}},
		Rule{Identity: ".*", Keys: "public/", Actions: []string{"read"}},
		Rule{Identity: ".+", KeysRegex: `tmp/[a-z]+`, Actions: []string{"write"}},
	)
	cases := []struct {
		id   Identity
		a    Action
		key  string
		want bool
	}{
		{user("admin"), Read | Write, "anything", true},
		{user("admin"), Admin, "", true},
		{user("admin"), Read, "app/secret/k", false}, // the deny rule comes first
		{user("writer"), Write, "app/x", true},
		{user("job-7"), Write, "app/x", true},
		{user("job-x"), Write, "app/x", false},
		{user("writer"), Write, "other", false},
		{user("writer"), Admin, "", false},
		{user("web1"), Read, "app/x", true},
		{user("web1"), Write, "app/x", false},
		{user("web1"), Read | Write, "app/x", false}, // every action must be allowed
		{user("web10"), Read, "app/x", false},        // identity regexes match the whole name
		{user("xwriter"), Write, "app/x", false},
		{Anonymous, Read, "public/a", true},
		{Anonymous, Read, "app/x", false},
		{Anonymous, Write, "tmp/abc", false}, // .+ excludes anonymous
		{user("web1"), Write, "tmp/abc", true},
		{user("web1"), Write, "tmp/abc/d", false}, // key regexes match the whole key
		{System, Read | Write | Admin, "app/secret/k", true},
	}
	for _, c := range cases {
		if got := p.Allow(c.id, c.a, c.key); got != c.want {
			t.Errorf("Allow(%q, %s, %q) = %v, want %v", c.id.Name, c.a, c.key, got, c.want)
		}
	}
}

func TestRangeRules(t *testing.T) {
	p := mustCompile(t,
		Rule{Identity: "w", Keys: "app/secret/", Actions: []string{"write"}, Effect: "deny"},
		Rule{Identity: "w", Keys: "app/", Actions: []string{"write"}},
		Rule{Identity: "w", Keys: "other/a", Actions: []string{"write"}},
		Rule{Identity: "r", KeysRegex: "x.*", Actions: []string{"write"}},
	)
	cases := []struct {
		id     string
		prefix string
		want   bool
	}{
		{"w", "app/data/", true},
		{"w", "app/", false},   // covers the denied app/secret/
		{"w", "app/se", false}, // so does this
		{"w", "", false},       // everything: not all allowed
		{"w", "other/", false}, // only other/a... is allowed
		{"w", "other/a", true}, // covered
		{"w", "app/secret/x", false},
		{"r", "x", false}, // a regex cannot prove it covers a range
	}
	for _, c := range cases {
		if got := p.AllowRange(user(c.id), Write, c.prefix); got != c.want {
			t.Errorf("AllowRange(%q, write, %q) = %v, want %v", c.id, c.prefix, got, c.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, r := range []Rule{
		{Keys: "a", Actions: []string{"read"}},
		{Identity: "(", Actions: []string{"read"}},
		{Identity: "a", Actions: nil},
		{Identity: "a", Actions: []string{"delete"}},
		{Identity: "a", Keys: "x", KeysRegex: "y", Actions: []string{"read"}},
		{Identity: "a", KeysRegex: "[", Actions: []string{"read"}},
		{Identity: "a", Actions: []string{"read"}, Effect: "maybe"},
	} {
		if _, err := Compile([]Rule{r}); err == nil {
			t.Errorf("Compile(%+v) accepted a bad rule", r)
		}
	}
}

func TestUsersAndTokens(t *testing.T) {
	h, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	tok, tk, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	cache := NewPasswordCache()
	d, err := NewDirectory(cache, []User{{Name: "alice", PasswordHash: h}}, []User{{Name: "bot", Tokens: []Token{tk}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // the second time from the cache
		if id, err := d.Password("alice", "s3cret"); err != nil || id.Name != "alice" {
			t.Fatalf("right password: %v %v", id, err)
		}
	}
	for _, c := range [][2]string{{"alice", "wrong"}, {"alice", ""}, {"nobody", "s3cret"}, {"bot", ""}} {
		if _, err := d.Password(c[0], c[1]); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("Password(%q, %q) = %v", c[0], c[1], err)
		}
	}
	if id, err := d.Token(tok); err != nil || id.Name != "bot" || id.Via != "token" {
		t.Fatalf("token: %v %v", id, err)
	}
	if _, err := d.Token(tok + "x"); err == nil {
		t.Fatal("a wrong token was accepted")
	}
	if _, err := NewDirectory(nil, []User{{Name: "a"}}, []User{{Name: "a"}}); err == nil {
		t.Fatal("a user defined twice was accepted")
	}
	for _, u := range []User{{Name: ""}, {Name: "a:b"}, {Name: "a b"}, {Name: "cairn:x"}, {Name: "a", PasswordHash: "plain"},
		{Name: "a", Tokens: []Token{{ID: "1", SHA256: "zz"}}}} {
		if err := u.Validate(); err == nil {
			t.Errorf("user %+v accepted", u)
		}
	}
	if _, err := HashPassword(strings.Repeat("x", 73)); err == nil {
		t.Fatal("a password longer than bcrypt's limit was accepted")
	}
}

// FuzzRules: whatever rules a client sends, compiling never panics, and a
// range the policy allows is allowed key by key: the range check never lets
// a delete-prefix reach a key a single-key check would refuse.
func FuzzRules(f *testing.F) {
	f.Add(`[{"identity":"w","keys":"app/","actions":["write"]},{"identity":".*","keys":"app/s","actions":["write"],"effect":"deny"}]`, "w", "app/", "x")
	f.Add(`[{"identity":"w","keys_regex":"a.*","actions":["write"]}]`, "w", "a", "b")
	f.Add(`[{"identity":".+","actions":["read","write","admin"]}]`, "", "", "")
	f.Fuzz(func(t *testing.T, rulesJSON, name, prefix, suffix string) {
		var rules []Rule
		if json.Unmarshal([]byte(rulesJSON), &rules) != nil {
			return
		}
		p, err := Compile(rules)
		if err != nil {
			return
		}
		id := Identity{Name: name, Via: "password"}
		for _, a := range []Action{Read, Write} {
			if p.AllowRange(id, a, prefix) && !p.Allow(id, a, prefix+suffix) {
				t.Fatalf("range %q allowed for %s but key %q is not", prefix, a, prefix+suffix)
			}
		}
		p.AllowAdmin(id)
	})
}

// TestMetricsAction: the metrics action reads /metrics and nothing else; it
// ignores keys like admin does, admin implies it, and a deny rule takes it
// away.
func TestMetricsAction(t *testing.T) {
	p := mustCompile(t,
		Rule{Identity: "admin", Actions: []string{"admin"}},
		Rule{Identity: "banned", Actions: []string{"metrics"}, Effect: "deny"},
		Rule{Identity: "prom|banned", Keys: "some/prefix/", Actions: []string{"metrics"}},
		Rule{Identity: "reader", Actions: []string{"read"}},
	)
	for _, c := range []struct {
		who  string
		want bool
	}{{"admin", true}, {"prom", true}, {"banned", false}, {"reader", false}, {"", false}} {
		if got := p.AllowMetrics(user(c.who)); got != c.want {
			t.Errorf("AllowMetrics(%q) = %v, want %v", c.who, got, c.want)
		}
	}
	if p.Allow(user("prom"), Read, "some/prefix/k") || p.AllowAdmin(user("prom")) {
		t.Error("the metrics action must grant no read and no admin")
	}
	if a, err := ParseAction("Metrics"); err != nil || a != Metrics || a.String() != "metrics" {
		t.Errorf("ParseAction(Metrics) = %v, %v", a, err)
	}
	if _, err := ParseAction("metric"); err == nil || !strings.Contains(err.Error(), "metrics") {
		t.Errorf("an unknown action's error must list metrics: %v", err)
	}
	var open *Policy
	if !open.AllowMetrics(Anonymous) {
		t.Error("no rules: metrics open to everyone")
	}
}
