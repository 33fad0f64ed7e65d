package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/cairnkv/cairn/keyspace"
)

func load(t *testing.T, args []string, env map[string]string, file string) (Config, error) {
	t.Helper()
	c := Default()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	f := RegisterFlags(fs, &c)
	if file != "" {
		p := filepath.Join(t.TempDir(), "cairn.yaml")
		if err := os.WriteFile(p, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", p)
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	err := Load(fs, &c, f, func(k string) string { return env[k] })
	return c, err
}

func TestPrecedence(t *testing.T) {
	file := "name: from-file\ndata-dir: /file\nlisten-client: 127.0.0.1:1\nheartbeat-timeout: 250ms\n"
	env := map[string]string{"CAIRN_DATA_DIR": "/env", "CAIRN_LISTEN_CLIENT": "127.0.0.1:2"}
	c, err := load(t, []string{"--listen-client", "127.0.0.1:3"}, env, file)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "from-file" || c.DataDir != "/env" || c.ListenClient != "127.0.0.1:3" || c.HeartbeatTimeout != 250*time.Millisecond {
		t.Fatalf("precedence wrong: %+v", c)
	}
	if c.ListenPeer != "127.0.0.1:7701" {
		t.Fatalf("default lost: %s", c.ListenPeer)
	}
	// The config file can come from the environment too.
	p := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(p, []byte("name: envfile\n"), 0o600)
	c, err = load(t, nil, map[string]string{"CAIRN_CONFIG": p}, "")
	if err != nil || c.Name != "envfile" {
		t.Fatalf("CAIRN_CONFIG: %v %s", err, c.Name)
	}
}

func TestLoadErrorsNameTheSource(t *testing.T) {
	if _, err := load(t, nil, nil, "nmae: typo\n"); err == nil || !strings.Contains(err.Error(), "nmae") {
		t.Fatalf("unknown YAML key: %v", err)
	}
	if _, err := load(t, nil, map[string]string{"CAIRN_MAX_VALUE_BYTES": "lots"}, ""); err == nil || !strings.Contains(err.Error(), "CAIRN_MAX_VALUE_BYTES") {
		t.Fatalf("bad env: %v", err)
	}
	if _, err := load(t, []string{"--no-such-flag"}, nil, ""); err == nil {
		t.Fatal("unknown flag accepted")
	}
}

func TestValidate(t *testing.T) {
	if d := Default(); d.Validate() != nil {
		err := d.Validate()
		t.Fatalf("defaults invalid: %v", err)
	}
	cases := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"empty name", func(c *Config) { c.Name = "" }, "name"},
		{"bad listen", func(c *Config) { c.ListenClient = "nope" }, "listen-client"},
		{"bad state", func(c *Config) { c.InitialClusterState = "old" }, "initial-cluster-state"},
		{"cluster without me", func(c *Config) { c.InitialCluster = "a=127.0.0.1:1,b=127.0.0.1:2" }, "does not name this node"},
		{"duplicate member", func(c *Config) { c.InitialCluster = "default=127.0.0.1:1,default=127.0.0.1:2" }, "twice"},
		{"bad member", func(c *Config) { c.InitialCluster = "default" }, "name=host:port"},
		{"join not url", func(c *Config) { c.Join = "127.0.0.1:7700" }, "join"},
		{"force new cluster and join", func(c *Config) { c.ForceNewCluster = true; c.Join = "http://x:1" }, "force-new-cluster"},
		{"join and cluster", func(c *Config) { c.Join = "http://x:1"; c.InitialCluster = "default=127.0.0.1:1,b=127.0.0.1:2" }, "not both"},
		{"cert without key", func(c *Config) { c.PeerCertFile = "c.pem" }, "go together"},
		{"cert without ca", func(c *Config) { c.PeerCertFile, c.PeerKeyFile = "c", "k" }, "trusted-ca"},
		{"value too big", func(c *Config) { c.MaxValueBytes = 65 << 20 }, "max-value-bytes"},
		{"election < heartbeat", func(c *Config) { c.ElectionTimeout = c.HeartbeatTimeout / 2 }, "election-timeout"},
		{"log level", func(c *Config) { c.LogLevel = "loud" }, "log-level"},
		{"read mode", func(c *Config) { c.ReadMode = "fast" }, "read-mode"},
		{"lease drift zero", func(c *Config) { c.LeaseMaxDrift = 0 }, "lease-max-drift"},
		{"lease drift whole", func(c *Config) { c.LeaseMaxDrift = 1 }, "lease-max-drift"},
		{"backup target scheme", func(c *Config) { c.BackupTarget = "http://x/" }, "backup-target"},
		{"backup file relative", func(c *Config) { c.BackupTarget = "file://rel/dir" }, "file:///absolute"},
		{"backup s3 without bucket", func(c *Config) { c.BackupTarget = "s3:///prefix" }, "s3://bucket"},
		{"mirror outbox zero", func(c *Config) { c.MirrorOutboxMax = 0 }, "mirror-outbox-max"},
	}
	for _, ok := range []string{"file:///var/backups", "s3://bucket/prefix?endpoint=127.0.0.1:9000&path_style=true&insecure=true"} {
		c := Default()
		c.BackupTarget = ok
		if err := c.Validate(); err != nil {
			t.Errorf("backup-target %s: %v", ok, err)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
	// Every problem is reported at once.
	c := Default()
	c.Name, c.LogLevel = "", "loud"
	if err := c.Validate(); strings.Count(err.Error(), "\n") < 1 {
		t.Fatalf("only one problem reported: %v", err)
	}
}

func TestInitialMembers(t *testing.T) {
	c := Default()
	ms, err := c.InitialMembers()
	if err != nil || len(ms) != 1 || ms[0].Name != "default" || ms[0].Addr != "127.0.0.1:7701" {
		t.Fatalf("single node: %+v %v", ms, err)
	}
	c.InitialCluster = "default=127.0.0.1:1, b=127.0.0.1:2"
	if ms, err = c.InitialMembers(); err != nil || len(ms) != 2 || ms[1].Name != "b" {
		t.Fatalf("two members: %+v %v", ms, err)
	}
}

func FuzzParseInitialCluster(f *testing.F) {
	f.Add("n1=127.0.0.1:7701,n2=127.0.0.1:7711")
	f.Add("=,=")
	f.Fuzz(func(t *testing.T, s string) {
		peers, err := ParseInitialCluster(s)
		if err == nil && len(peers) == 0 {
			t.Fatal("no peers and no error")
		}
	})
}

func TestKeyspacesFromFile(t *testing.T) {
	file := `keyspaces:
  - prefix: sessions/
    mode: strong
    default_ttl: 60s
    max_value_bytes: 4096
  - prefix: certs/
    mode: eventual
    replicas: all
    write_quorum: 1
  - prefix: cache/
    mode: eventual
    replicas: 3
    sloppy_quorum: false
`
	c, err := load(t, nil, nil, file)
	if err == nil {
		err = c.Validate()
	}
	if err != nil {
		t.Fatal(err)
	}
	want := []keyspace.Policy{
		{Prefix: "sessions/", Mode: keyspace.Strong, DefaultTTL: time.Minute, MaxValueBytes: 4096},
		{Prefix: "certs/", Mode: keyspace.Eventual, WriteQuorum: 1, SloppyQuorum: true},
		{Prefix: "cache/", Mode: keyspace.Eventual, Replicas: 3},
	}
	if len(c.Keyspaces) != len(want) {
		t.Fatalf("keyspaces %+v", c.Keyspaces)
	}
	for i := range want {
		if c.Keyspaces[i] != want[i] {
			t.Errorf("keyspaces[%d] = %+v, want %+v", i, c.Keyspaces[i], want[i])
		}
	}
	for name, file := range map[string]string{
		"unknown field":    "keyspaces:\n  - prefix: a/\n    mode: strong\n    replica: 3\n",
		"bad replicas":     "keyspaces:\n  - prefix: a/\n    mode: eventual\n    replicas: most\n",
		"bad ttl":          "keyspaces:\n  - prefix: a/\n    mode: strong\n    default_ttl: soon\n",
		"bad mode":         "keyspaces:\n  - prefix: a/\n    mode: sometimes\n",
		"twice":            "keyspaces:\n  - {prefix: a/, mode: strong}\n  - {prefix: a/, mode: strong}\n",
		"default eventual": "keyspaces:\n  - {prefix: \"\", mode: eventual}\n",
		"over the limit":   "max-value-bytes: 100\nkeyspaces:\n  - {prefix: a/, mode: strong, max_value_bytes: 200}\n",
	} {
		c, err := load(t, nil, nil, file)
		if err == nil {
			err = c.Validate()
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestMaterializeFromFileFlagsAndEnv(t *testing.T) {
	file := "materialize:\n  - prefix: certs/\n    dir: /srv/certs\n    file_mode: \"0600\"\n    on_change: systemctl reload nginx\n  - prefix: pkgs/\n    dir: /srv/pkgs\n"
	c, err := load(t, []string{"--materialize", "pkgs/=/mnt/pkgs", "--materialize", "cfg/=/etc/app"}, nil, file)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range c.Materialize {
		got[m.Prefix] = m.Dir
	}
	if len(got) != 3 || got["certs/"] != "/srv/certs" || got["pkgs/"] != "/mnt/pkgs" || got["cfg/"] != "/etc/app" {
		t.Fatalf("materialize: %+v", c.Materialize)
	}
	for _, m := range c.Materialize {
		if m.Prefix == "certs/" && (m.FileMode != 0o600 || len(m.OnChange) != 3) {
			t.Fatalf("the file's fields: %+v", m)
		}
	}
	c, err = load(t, nil, map[string]string{"CAIRN_MATERIALIZE": "a/=/x,b/=/y"}, "")
	if err != nil || len(c.Materialize) != 2 {
		t.Fatalf("from the environment: %+v %v", c.Materialize, err)
	}
	for _, bad := range [][]string{{"--materialize", "nodir"}, {"--materialize", "a/=relative"}, {"--materialize", "a/="}} {
		if _, err := load(t, bad, nil, ""); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	c, err = load(t, nil, nil, "materialize:\n  - prefix: a/\n    dir: /same\n  - prefix: b/\n    dir: /same\n")
	if err == nil {
		err = c.Validate()
	}
	if err == nil {
		t.Error("two prefixes in one directory accepted")
	}
	if _, err := load(t, []string{"--watch-history", "-1"}, nil, ""); err == nil {
		if c, _ := load(t, []string{"--watch-history", "-1"}, nil, ""); c.Validate() == nil {
			t.Error("a negative --watch-history accepted")
		}
	}
}

func TestMirrorOutboxMax(t *testing.T) {
	if c := Default(); c.MirrorOutboxMax != 1_000_000 {
		t.Fatalf("default mirror-outbox-max %d", c.MirrorOutboxMax)
	}
	c, err := load(t, []string{"--mirror-outbox-max", "5000"}, nil, "")
	if err != nil || c.MirrorOutboxMax != 5000 || c.Validate() != nil {
		t.Fatalf("--mirror-outbox-max 5000: %d, %v", c.MirrorOutboxMax, err)
	}
	if _, err := load(t, []string{"--mirror-outbox-max", "many"}, nil, ""); err == nil {
		t.Error("--mirror-outbox-max many accepted")
	}
}
