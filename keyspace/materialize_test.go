package keyspace

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestMaterializePolicyJSON(t *testing.T) {
	in := `{"prefix":"certs/","mode":"eventual","replicas":"all","materialize":{"dir":"/var/lib/cairn/certs","file_mode":"0640","dir_mode":"0750","on_change":"systemctl reload 'nginx web'","debounce":"2s","hook_timeout":"10s"}}`
	p, err := ParseJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	m := p.Materialize
	if m == nil || m.Dir != "/var/lib/cairn/certs" || m.FileMode != 0o640 || m.DirMode != 0o750 || m.Debounce != 2*time.Second ||
		m.HookTimeout != 10*time.Second || !slices.Equal(m.OnChange, []string{"systemctl", "reload", "nginx web"}) {
		t.Fatalf("parsed %+v", m)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back Policy
	if err := json.Unmarshal(b, &back); err != nil || !back.Equal(p) {
		t.Fatalf("round trip: %s → %+v %v", b, back.Materialize, err)
	}
	var list Policy
	if err := json.Unmarshal([]byte(`{"prefix":"a/","mode":"strong","materialize":{"dir":"/a","on_change":["/bin/reload","--all"]}}`), &list); err != nil ||
		!slices.Equal(list.Materialize.OnChange, []string{"/bin/reload", "--all"}) {
		t.Fatalf("list on_change: %+v %v", list.Materialize, err)
	}
}

func TestMaterializePolicyRefusals(t *testing.T) {
	for _, in := range []string{
		`{"prefix":"a/","mode":"strong","materialize":{"dir":"relative"}}`,
		`{"prefix":"a/","mode":"strong","materialize":{}}`,
		`{"prefix":"a/","mode":"strong","materialize":{"dir":"/a","file_mode":"rw"}}`,
		`{"prefix":"a/","mode":"strong","materialize":{"dir":"/a","file_mode":"01777"}}`,
		`{"prefix":"a/","mode":"strong","materialize":{"dir":"/a","debounce":"soon"}}`,
		`{"prefix":"a/","mode":"strong","materialize":{"dir":"/a","on_change":"unterminated 'quote"}}`,
		`{"prefix":"a/","mode":"strong","materialize":{"dir":"/a","on_change":[1,2]}}`,
		`{"prefix":"a/","mode":"strong","materialize":{"dir":"/a","strip_prefix":"b/"}}`,
		`{"prefix":"a/","mode":"strong","materialize":{"dir":"/a","prefix":"b/"}}`,
		`{"prefix":"a/","mode":"strong","materialize":{"dir":"/a","unknown":1}}`,
	} {
		p, err := ParseJSON([]byte(in))
		if err == nil {
			err = p.Validate()
		}
		if !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("%s: accepted (%+v) or wrong error %v", in, p, err)
		}
	}
}

func TestMaterializeYAML(t *testing.T) {
	var p Policy
	err := yaml.Unmarshal([]byte("prefix: certs/\nmode: strong\nmaterialize:\n  dir: /srv/certs\n  file_mode: \"0600\"\n  on_change: [\"/usr/bin/touch\", \"/tmp/x\"]\n"), &p)
	if err != nil || p.Materialize == nil || p.Materialize.FileMode != 0o600 || len(p.Materialize.OnChange) != 2 {
		t.Fatalf("%+v %v", p.Materialize, err)
	}
}

func TestSplitCommand(t *testing.T) {
	for in, want := range map[string][]string{
		`systemctl reload nginx`:    {"systemctl", "reload", "nginx"},
		`  a   "b c"  'd "e"' f\ g`: {"a", "b c", `d "e"`, "f g"},
		`sh -c 'echo $X | cat'`:     {"sh", "-c", "echo $X | cat"},
		`""`:                        {""},
	} {
		got, err := SplitCommand(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "   ", `a "b`, `a\`} {
		if got, err := SplitCommand(in); err == nil {
			t.Errorf("%q: accepted as %q", in, got)
		}
	}
}
