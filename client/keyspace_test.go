package client

import (
	"encoding/json"
	"testing"
)

func TestKeyspaceJSON(t *testing.T) {
	for _, c := range []struct {
		k    Keyspace
		want string
	}{
		{Keyspace{Prefix: "a/", Mode: "eventual", Replicas: "all"}, `{"prefix":"a/","mode":"eventual","replicas":"all"}`},
		{Keyspace{Prefix: "a/", Mode: "eventual", Replicas: "3"}, `{"prefix":"a/","mode":"eventual","replicas":3}`},
		{Keyspace{Prefix: "", Mode: "strong"}, `{"prefix":"","mode":"strong"}`},
	} {
		b, err := json.Marshal(c.k)
		if err != nil || string(b) != c.want {
			t.Errorf("%+v: %s %v, want %s", c.k, b, err, c.want)
		}
		var back Keyspace
		if err := json.Unmarshal(b, &back); err != nil || back != c.k {
			t.Errorf("round trip of %s: %+v %v", b, back, err)
		}
	}
	if _, err := json.Marshal(Keyspace{Replicas: "most"}); err == nil {
		t.Error("replicas \"most\" was sent")
	}
}
