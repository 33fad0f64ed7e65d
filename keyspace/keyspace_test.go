package keyspace

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLookupLongestPrefix(t *testing.T) {
	tbl := NewTable()
	if err := tbl.Set([]Policy{
		{Prefix: "certs/", Mode: Eventual, WriteQuorum: 1},
		{Prefix: "certs/internal/", Mode: Strong},
		{Prefix: "cache/", Mode: Eventual, Replicas: 1},
	}); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"certs/www.crt":         "certs/",
		"certs/internal/ca.crt": "certs/internal/",
		"cache/x":               "cache/",
		"cach":                  "",
		"":                      "",
	} {
		if got := tbl.Lookup(key).Prefix; got != want {
			t.Errorf("Lookup(%q) = %q, want %q", key, got, want)
		}
	}
	if got := tbl.Policies(); len(got) != 4 || got[len(got)-1].Prefix != "" {
		t.Errorf("Policies() = %+v: want the three and the default last", got)
	}
}

func TestSetRefusesBadPolicies(t *testing.T) {
	tbl := NewTable()
	for name, ps := range map[string][]Policy{
		"unknown mode":         {{Prefix: "a/", Mode: "sometimes"}},
		"negative quorum":      {{Prefix: "a/", Mode: Eventual, WriteQuorum: -1}},
		"quorum over replicas": {{Prefix: "a/", Mode: Eventual, Replicas: 2, WriteQuorum: 3}},
		"negative ttl":         {{Prefix: "a/", Mode: Eventual, DefaultTTL: -1}},
		"twice":                {{Prefix: "a/", Mode: Strong}, {Prefix: "a/", Mode: Eventual}},
		"eventual default":     {{Prefix: "", Mode: Eventual}},
	} {
		if err := tbl.Set(ps); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A refused Set changes nothing.
	if got := tbl.Policies(); len(got) != 1 || got[0] != (Policy{Prefix: "", Mode: Strong}) {
		t.Errorf("table after refusals: %+v", got)
	}
}

// The JSON form is the HTTP API's and the log's: replicas is a number or
// "all", default_ttl a duration string, sloppy_quorum defaults to true for
// eventual policies; unknown fields are refused from people (ParseJSON) and
// ignored in the log (UnmarshalJSON).
func TestPolicyJSON(t *testing.T) {
	for name, c := range map[string]struct {
		in   string
		want Policy
		out  string
	}{
		"eventual all": {
			in:   `{"prefix":"certs/","mode":"eventual","replicas":"all","write_quorum":1}`,
			want: Policy{Prefix: "certs/", Mode: Eventual, WriteQuorum: 1, SloppyQuorum: true},
			out:  `{"prefix":"certs/","mode":"eventual","replicas":"all","write_quorum":1,"sloppy_quorum":true}`,
		},
		"eventual counted, strict": {
			in:   `{"prefix":"cache/","mode":"eventual","replicas":3,"read_quorum":2,"default_ttl":"1m30s","sloppy_quorum":false}`,
			want: Policy{Prefix: "cache/", Mode: Eventual, Replicas: 3, ReadQuorum: 2, DefaultTTL: 90 * time.Second},
			out:  `{"prefix":"cache/","mode":"eventual","replicas":3,"read_quorum":2,"default_ttl":"1m30s","sloppy_quorum":false}`,
		},
		"strong": {
			in:   `{"prefix":"s/","mode":"strong","default_ttl":"60s","max_value_bytes":100}`,
			want: Policy{Prefix: "s/", Mode: Strong, DefaultTTL: time.Minute, MaxValueBytes: 100},
			out:  `{"prefix":"s/","mode":"strong","default_ttl":"1m0s","max_value_bytes":100}`,
		},
	} {
		p, err := ParseJSON([]byte(c.in))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p != c.want {
			t.Errorf("%s: decoded %+v, want %+v", name, p, c.want)
		}
		out, err := json.Marshal(p)
		if err != nil || string(out) != c.out {
			t.Errorf("%s: encoded %s %v, want %s", name, out, err, c.out)
		}
		var back Policy
		if err := json.Unmarshal(out, &back); err != nil || back != p {
			t.Errorf("%s: round trip %+v %v", name, back, err)
		}
	}
	if _, err := ParseJSON([]byte(`{"prefix":"a/","mode":"eventual","replica":3}`)); !errors.Is(err, ErrInvalidPolicy) {
		t.Errorf("unknown field from a person: %v", err)
	}
	mirrored := Policy{Prefix: "f/", Mode: Eventual, SloppyQuorum: true, Backup: "s3://b/f?endpoint=h:1", ReadFallback: ReadFallbackBackup}
	if b, err := json.Marshal(mirrored); err != nil || !strings.Contains(string(b), `"backup":"s3://b/f?endpoint=h:1","read_fallback":"backup"`) {
		t.Errorf("a mirrored policy encodes as %s %v", b, err)
	} else if back, err := ParseJSON(b); err != nil || !back.Equal(mirrored) {
		t.Errorf("a mirrored policy round trip: %+v %v", back, err)
	}
	for _, bad := range []Policy{
		{Prefix: "f/", Mode: Strong, Backup: "file:///tmp/x"},
		{Prefix: "f/", Mode: Strong, Backup: "s3://key:secret@b/f"},
		{Prefix: "f/", Mode: Strong, ReadFallback: ReadFallbackBackup},
		{Prefix: "f/", Mode: Strong, Backup: "s3://b/f", ReadFallback: "tape"},
	} {
		if err := bad.Validate(); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("policy %+v: %v, want invalid", bad, err)
		}
	}
	var newer Policy
	if err := json.Unmarshal([]byte(`{"prefix":"a/","mode":"strong","compression":{"algo":"zstd"},"materialize":{"dir":"/x","future":1}}`), &newer); err != nil ||
		!newer.Equal(Policy{Prefix: "a/", Mode: Strong, Materialize: &Materialize{Dir: "/x"}}) {
		t.Errorf("a newer version's field in the log: %+v %v", newer, err)
	}
	for _, in := range []string{
		`{"prefix":"a/","mode":"eventual","replicas":"some"}`,
		`{"prefix":"a/","mode":"eventual","replicas":1.5}`,
		`{"prefix":"a/","mode":"eventual","default_ttl":60}`,
		`{"prefix":"a/","mode":"eventual","default_ttl":"soon"}`,
	} {
		var p Policy
		if err := json.Unmarshal([]byte(in), &p); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("%s: %v, want ErrInvalidPolicy", in, err)
		}
	}
}
