package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/config"
	"github.com/cairnkv/cairn/test/cluster"
)

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// aclCluster is a 3-node cluster with one admin user from the config file;
// every other user, token and rule is made through the admin API of node 0
// and must be enforced by the others (they are replicated).
func aclCluster(t *testing.T) (c *cluster.Cluster, token string) {
	t.Helper()
	hash, err := auth.HashPassword("adminpw")
	if err != nil {
		t.Fatal(err)
	}
	c = cluster.New(t, 3, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.EnablePprof = true
		cfg.Auth.Users = []auth.User{{Name: "admin", PasswordHash: hash}}
		cfg.Auth.Rules = []auth.Rule{{Identity: "admin", Actions: []string{"read", "write", "admin"}}}
	}})
	u0 := "http://" + c.Nodes[0].ClientAddr
	admin := basicAuth("admin", "adminpw")
	for _, u := range [][2]string{{"writer", "wpw"}, {"reader", "rpw"}, {"bot", "botpw"}} {
		if r := do(t, "PUT", u0+"/v1/auth/users/"+u[0], `{"password":"`+u[1]+`"}`, "Authorization", admin); r.status != 200 {
			t.Fatalf("create user %s: %d %s", u[0], r.status, r.body)
		}
	}
	r := do(t, "POST", u0+"/v1/auth/users/bot/tokens", "", "Authorization", admin)
	if r.status != 201 {
		t.Fatalf("token: %d %s", r.status, r.body)
	}
	token = jsonField(t, r.body, "token").(string)
	rules := `{"rules":[
		{"identity":".*","keys":"app/secret/","actions":["read","write"],"effect":"deny"},
		{"identity":"writer|bot","keys":"app/","actions":["read","write"]},
		{"identity":"reader","keys":"app/","actions":["read"]},
		{"identity":".*","keys":"public/","actions":["read"]}]}`
	if r := do(t, "PUT", u0+"/v1/auth/rules", rules, "Authorization", admin); r.status != 200 {
		t.Fatalf("set rules: %d %s", r.status, r.body)
	}
	for k, v := range map[string]string{"app/a": "1", "app/secret/s": "s", "public/p": "p", "other/o": "o"} {
		if r := do(t, "PUT", u0+"/v1/kv/"+k, v, "Authorization", admin); r.status != 200 {
			t.Fatalf("seed %s: %d %s", k, r.status, r.body)
		}
	}
	return c, token
}

// TestACLMatrixHTTP sends every kind of request as every kind of identity to
// a node other than the one the rules were set on, and checks each is served
// or refused (403; 401 for wrong credentials) as the rules say, including
// the bypasses etcd has had: a txn whose other branch writes a forbidden
// key, a compare on a forbidden key, a prefix delete that covers a forbidden
// key, a list that starts inside the permitted range and runs outside it.
func TestACLMatrixHTTP(t *testing.T) {
	c, token := aclCluster(t)
	u := "http://" + c.Nodes[2].ClientAddr
	ids := map[string]string{
		"admin":  basicAuth("admin", "adminpw"),
		"writer": basicAuth("writer", "wpw"),
		"reader": basicAuth("reader", "rpw"),
		"bot":    "Bearer " + token,
		"anon":   "",
	}
	// The admin's rule comes from the config file, so it is evaluated
	// before the replicated deny rule: the admin may do everything. Ops
	// that would destroy the fixture are not sent as admin (skip).
	type op struct {
		name, method, path, body string
		allowed                  []string
		skip                     string
	}
	all := []string{"admin"}
	txnOtherBranch := `{"compare":[{"key":"app/a","target":"exists","op":"=","exists":true}],
		"success":[{"op":"put","key":"app/t","value":"1"}],"failure":[{"op":"put","key":"other/o","value":"pwned"}]}`
	txnCompareSecret := `{"compare":[{"key":"app/secret/s","target":"value","op":"=","value":"s"}],
		"success":[{"op":"put","key":"app/t","value":"2"}]}`
	txnOK := `{"success":[{"op":"put","key":"app/t","value":"3"},{"op":"get","key":"app/a"}]}`
	ops := []op{
		{"get", "GET", "/v1/kv/app/a", "", []string{"admin", "writer", "reader", "bot"}, ""},
		{"get public", "GET", "/v1/kv/public/p", "", []string{"admin", "writer", "reader", "bot", "anon"}, ""},
		{"get secret", "GET", "/v1/kv/app/secret/s", "", all, ""},
		{"put", "PUT", "/v1/kv/app/a", "2", []string{"admin", "writer", "bot"}, ""},
		{"put outside", "PUT", "/v1/kv/other/o", "o", all, ""},
		{"put secret", "PUT", "/v1/kv/app/secret/s", "pwned", all, "admin"},
		{"put public", "PUT", "/v1/kv/public/p", "pwned", all, "admin"},
		{"delete", "DELETE", "/v1/kv/app/none", "", []string{"admin", "writer", "bot"}, ""},
		{"delete prefix inside", "DELETE", "/v1/kv/app/b?prefix=true", "", []string{"admin", "writer", "bot"}, ""},
		{"delete prefix covering secret", "DELETE", "/v1/kv/app/?prefix=true", "", all, "admin"},
		{"delete prefix everything", "DELETE", "/v1/kv/?prefix=true", "", all, "admin"},
		{"patch", "PATCH", "/v1/kv/app/j", `{"a":1}`, []string{"admin", "writer", "bot"}, ""},
		{"txn other branch forbidden", "POST", "/v1/txn", txnOtherBranch, all, ""},
		{"txn compare forbidden", "POST", "/v1/txn", txnCompareSecret, all, ""},
		{"txn", "POST", "/v1/txn", txnOK, []string{"admin", "writer", "bot"}, ""},
		{"promote", "POST", "/v1/cluster/members/nobody/promote", "", []string{"admin"}, ""},
		{"remove member", "DELETE", "/v1/cluster/members/nobody", "", []string{"admin"}, ""},
		{"transfer", "POST", "/v1/cluster/leader/transfer", `{"to":"nobody"}`, []string{"admin"}, ""},
		{"users", "GET", "/v1/auth/users", "", []string{"admin"}, ""},
		{"pprof", "GET", "/debug/pprof/cmdline", "", []string{"admin"}, ""},
		{"set user", "PUT", "/v1/auth/users/mallory", `{"password":"x"}`, []string{"admin"}, ""},
		{"add token", "POST", "/v1/auth/users/writer/tokens", "", []string{"admin"}, ""},
		{"rules", "GET", "/v1/auth/rules", "", []string{"admin"}, ""},
		{"set rules", "PUT", "/v1/auth/rules", `{"rules":[{"identity":".*","actions":["read","write","admin"]}]}`, all, "admin"},
	}
	for _, o := range ops {
		for id, hdr := range ids {
			if id == o.skip {
				continue
			}
			h := []string{"Content-Type", "application/merge-patch+json"} // PATCH's; harmless elsewhere
			if hdr != "" {
				h = append(h, "Authorization", hdr)
			}
			r := do(t, o.method, u+o.path, o.body, h...)
			want := contains(o.allowed, id)
			if want && (r.status == 403 || r.status == 401) {
				t.Errorf("%s as %s: refused %d %s", o.name, id, r.status, r.body)
			}
			wantStatus := 403
			if id == "anon" {
				wantStatus = 401 // credentials may get it through
			}
			if !want && r.status != wantStatus {
				t.Errorf("%s as %s: got %d %s, want %d", o.name, id, r.status, r.body, wantStatus)
			}
		}
		r := do(t, o.method, u+o.path, o.body, "Authorization", basicAuth("writer", "wrong"), "Content-Type", "application/merge-patch+json")
		if r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s with a wrong password: %d %s", o.name, r.status, r.body)
		}
	}
	// Nothing a refused request touched has changed.
	admin := ids["admin"]
	for k, v := range map[string]string{"app/secret/s": "s", "other/o": "o", "public/p": "p"} {
		if r := do(t, "GET", u+"/v1/kv/"+k, "", "Authorization", admin); r.status != 200 || r.body != v {
			t.Errorf("%s = %d %q after refused writes, want %q", k, r.status, r.body, v)
		}
	}

	// Lists show only what the identity may read, wherever they start.
	listKeys := func(id, prefix string) []string {
		var h []string
		if ids[id] != "" {
			h = []string{"Authorization", ids[id]}
		}
		r := do(t, "GET", u+"/v1/kv/"+prefix+"?list=true&keys_only=true", "", h...)
		if r.status != 200 {
			t.Fatalf("list %q as %s: %d %s", prefix, id, r.status, r.body)
		}
		var out struct {
			Items []struct{ Key string } `json:"items"`
		}
		if err := json.Unmarshal([]byte(r.body), &out); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, it := range out.Items {
			keys = append(keys, it.Key)
		}
		return keys
	}
	for _, tc := range []struct{ id, prefix string }{{"reader", ""}, {"reader", "app/"}, {"anon", ""}, {"writer", "a"}, {"bot", ""}} {
		for _, k := range listKeys(tc.id, tc.prefix) {
			ok := strings.HasPrefix(k, "public/") || (tc.id != "anon" && strings.HasPrefix(k, "app/") && !strings.HasPrefix(k, "app/secret/"))
			if !ok {
				t.Errorf("list %q as %s shows %q", tc.prefix, tc.id, k)
			}
		}
	}
	if keys := listKeys("admin", ""); !contains(keys, "other/o") || !contains(keys, "app/secret/s") {
		t.Errorf("admin's list: %v", keys)
	}
	if keys := listKeys("reader", ""); !contains(keys, "app/a") || !contains(keys, "public/p") {
		t.Errorf("reader's list misses keys it may read: %v", keys)
	}

	// Anonymous clients cannot make the node buffer large bodies.
	big := strings.Repeat("x", 100<<10)
	if r := do(t, "PUT", u+"/v1/kv/public/big", big); r.status != 413 {
		t.Errorf("anonymous 100 KiB PUT: %d %s", r.status, r.body)
	}
	if r := do(t, "PUT", u+"/v1/kv/app/big", big, "Authorization", ids["writer"]); r.status != 200 {
		t.Errorf("writer 100 KiB PUT: %d %s", r.status, r.body)
	}

	// whoami reports where the identity came from.
	if r := do(t, "GET", u+"/v1/auth/whoami", "", "Authorization", ids["bot"]); !strings.Contains(r.body, `"identity":"bot"`) || !strings.Contains(r.body, `"via":"token"`) {
		t.Errorf("whoami: %s", r.body)
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// TestACLMatrixRESP checks the same rules over the Redis protocol: AUTH,
// NOAUTH for connections without credentials, NOPERM for what the rules
// refuse, MULTI/EXEC and pipelines checked command by command, KEYS and SCAN
// showing only permitted keys, admin commands.
func TestACLMatrixRESP(t *testing.T) {
	c, _ := aclCluster(t)
	addr := c.Running(1).RESPAddr()
	ctx := context.Background()
	cl := func(user, pass string) *redis.Client {
		rc := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, Username: user, Password: pass, MaxRetries: -1,
			DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second})
		t.Cleanup(func() { rc.Close() })
		return rc
	}
	clients := map[string]*redis.Client{
		"admin": cl("admin", "adminpw"), "writer": cl("writer", "wpw"), "reader": cl("reader", "rpw"),
	}
	type op struct {
		name    string
		args    []any
		allowed []string
	}
	all := []string{"admin"} // config rules first: see TestACLMatrixHTTP
	ops := []op{
		{"get", []any{"GET", "app/a"}, []string{"admin", "writer", "reader"}},
		{"get secret", []any{"GET", "app/secret/s"}, all},
		{"set", []any{"SET", "app/a", "v"}, []string{"admin", "writer"}},
		{"set outside", []any{"SET", "other/o", "o"}, all},
		{"set secret", []any{"SET", "app/secret/s", "s"}, all},
		{"incr", []any{"INCR", "app/n"}, []string{"admin", "writer"}},
		{"append", []any{"APPEND", "app/ap", "x"}, []string{"admin", "writer"}},
		{"getset", []any{"GETSET", "app/gs", "x"}, []string{"admin", "writer"}},
		{"rename to forbidden", []any{"RENAME", "app/a", "other/r"}, all},
		{"del secret", []any{"DEL", "app/secret/s"}, all},
		{"mget mixed", []any{"MGET", "app/a", "app/secret/s"}, all},
		{"raft leader", []any{"RAFT", "LEADER"}, []string{"admin"}},
		{"machine", []any{"MACHINE"}, []string{"admin"}},
	}
	for _, o := range ops {
		for id, rc := range clients {
			if id == "admin" && (o.name == "rename to forbidden" || o.name == "del secret") {
				continue // allowed, but it would destroy the fixture
			}
			err := rc.Do(ctx, o.args...).Err()
			if errors.Is(err, redis.Nil) {
				err = nil
			}
			denied := err != nil && strings.HasPrefix(err.Error(), "NOPERM")
			if want := contains(o.allowed, id); want == denied {
				t.Errorf("%s as %s: err %v, allowed %v", o.name, id, err, want)
			}
		}
	}
	// A connection without credentials must authenticate first.
	anon := cl("", "")
	if err := anon.Get(ctx, "public/p").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Errorf("GET without AUTH: %v", err)
	}
	if err := cl("writer", "wrong").Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("a wrong password: %v", err)
	}

	w := clients["writer"]
	// MULTI/EXEC is one transaction: a forbidden command fails all of it.
	_, err := w.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "app/m", "1", 0)
		p.Set(ctx, "other/o", "pwned", 0)
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("MULTI with a forbidden SET: %v", err)
	}
	if err := clients["admin"].Get(ctx, "app/m").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("app/m after the refused MULTI: %v", err)
	}
	// A pipeline is checked command by command.
	cmds, _ := w.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "app/p1", "1", 0)
		p.Set(ctx, "other/o", "pwned", 0)
		p.Set(ctx, "app/p2", "2", 0)
		return nil
	})
	if len(cmds) != 3 || cmds[0].Err() != nil || cmds[2].Err() != nil || cmds[1].Err() == nil || !strings.HasPrefix(cmds[1].Err().Error(), "NOPERM") {
		t.Errorf("pipeline: %v", cmds)
	}
	for k, v := range map[string]string{"other/o": "o", "app/secret/s": "s"} {
		if got, err := clients["admin"].Get(ctx, k).Result(); err != nil || got != v {
			t.Errorf("%s = %q, %v after refused writes", k, got, err)
		}
	}
	// KEYS and SCAN list only permitted keys.
	check := func(what string, keys []string) {
		sort.Strings(keys)
		if !contains(keys, "app/a") || !contains(keys, "public/p") {
			t.Errorf("%s misses permitted keys: %v", what, keys)
		}
		for _, k := range keys {
			if strings.HasPrefix(k, "app/secret/") || strings.HasPrefix(k, "other/") {
				t.Errorf("%s shows %q: %v", what, k, keys)
			}
		}
	}
	r := clients["reader"]
	keys, err := r.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	check("KEYS *", keys)
	var scanned []string
	iter := r.Scan(ctx, 0, "*", 2).Iterator()
	for iter.Next(ctx) {
		scanned = append(scanned, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	check("SCAN", scanned)
	if n, err := r.DBSize(ctx).Result(); err != nil || n != int64(len(keys)) {
		t.Errorf("DBSIZE = %d, %v; KEYS showed %d", n, err, len(keys))
	}

	// Deleting a user ends what its open connections may do.
	if err := c.Svc(0).DeleteUser(auth.WithIdentity(ctx, auth.System), "reader"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := r.Get(ctx, "app/a").Err()
		if err != nil && strings.HasPrefix(err.Error(), "NOAUTH") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET on a deleted user's connection: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
