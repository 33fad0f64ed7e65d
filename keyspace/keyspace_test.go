package keyspace

import (
	"errors"
	"testing"
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
