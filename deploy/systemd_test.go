package deploy

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnkv/cairn/config"
	"github.com/spf13/pflag"
)

// TestSystemdUnits runs systemd-analyze verify on deploy/systemd's units
// with ExecStart pointing at a binary that exists, so that any complaint at
// all (an unknown or misspelled directive, a bad value) fails the test; the
// acceptance check runs them as shipped and ignores only the missing
// /usr/local/bin/cairn.
func TestSystemdUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("skipped: no systemd-analyze here")
	}
	units, err := filepath.Glob("systemd/*.service")
	if err != nil || len(units) < 2 {
		t.Fatalf("units in deploy/systemd: %v %v", units, err)
	}
	bin, err := os.Executable() // any executable file will do
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var copies []string
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "ExecStart=/usr/local/bin/cairn serve --config /etc/cairn/") {
			t.Errorf("%s: ExecStart is not /usr/local/bin/cairn serve --config /etc/cairn/…", u)
		}
		c := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(c, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/cairn", bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		copies = append(copies, c)
	}
	out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, copies...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, want := range []string{"NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
		"CapabilityBoundingSet=\n", "SystemCallFilter=@system-service", "RestrictAddressFamilies=", "DynamicUser=yes", "StateDirectory=cairn"} {
		for _, u := range units {
			if b, _ := os.ReadFile(u); !strings.Contains(string(b), want) {
				t.Errorf("%s has no %q", u, strings.TrimSpace(want))
			}
		}
	}
	if b, _ := os.ReadFile("systemd/cairn@.service"); !strings.Contains(string(b), "User=cairn-%i") || !strings.Contains(string(b), "/etc/cairn/%i.yaml") {
		t.Errorf("cairn@.service: want User=cairn-%%i and --config /etc/cairn/%%i.yaml")
	}
}

// TestInstance runs cairn-instance create into a temporary root and loads
// the file it writes as cairn serve would (flags none, environment none,
// the file, then Validate), and checks what it refuses.
func TestInstance(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("skipped: no bash")
	}
	script, err := filepath.Abs("systemd/cairn-instance")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want config.Config // the fields checked
	}{
		{"defaults", []string{"n1"}, config.Config{Name: "n1", ListenClient: "127.0.0.1:7700", ListenPeer: "127.0.0.1:7701",
			ListenResp: "127.0.0.1:7702", AdvertiseClient: "http://127.0.0.1:7700"}},
		{"cluster", []string{"n2", "--client-port", "7710", "--peer-port", "7711", "--resp-port", "7712",
			"--initial-cluster", "n1=127.0.0.1:7701,n2=127.0.0.1:7711,n3=127.0.0.1:7721"},
			config.Config{Name: "n2", ListenClient: "127.0.0.1:7710", ListenPeer: "127.0.0.1:7711", ListenResp: "127.0.0.1:7712",
				AdvertiseClient: "http://127.0.0.1:7710", InitialCluster: "n1=127.0.0.1:7701,n2=127.0.0.1:7711,n3=127.0.0.1:7721"}},
		{"everywhere", []string{"db-4", "--host", "0.0.0.0", "--advertise-host", "db4.example.net", "--join", "http://db1.example.net:7700"},
			config.Config{Name: "db-4", ListenClient: "0.0.0.0:7700", ListenPeer: "0.0.0.0:7701", ListenResp: "0.0.0.0:7702",
				AdvertiseClient: "http://db4.example.net:7700", AdvertisePeer: "db4.example.net:7701", Join: "http://db1.example.net:7700"}},
		{"ipv6", []string{"v6", "--host", "::1"}, config.Config{Name: "v6", ListenClient: "[::1]:7700", AdvertiseClient: "http://[::1]:7700"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			out, err := exec.Command(script, append([]string{"create"}, append(tc.args, "--root", root)...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("cairn-instance create: %v\n%s", err, out)
			}
			name := tc.args[0]
			if !strings.Contains(string(out), "systemctl enable --now cairn@"+name) {
				t.Errorf("cairn-instance printed no systemctl command:\n%s", out)
			}
			c := mustLoad(t, filepath.Join(root, "etc", "cairn", name+".yaml"))
			if c.DataDir != "/var/lib/cairn/"+name {
				t.Errorf("data-dir %q, want /var/lib/cairn/%s (the unit's StateDirectory)", c.DataDir, name)
			}
			for _, f := range []struct{ field, got, want string }{
				{"name", c.Name, tc.want.Name}, {"listen-client", c.ListenClient, tc.want.ListenClient},
				{"listen-peer", c.ListenPeer, tc.want.ListenPeer}, {"listen-resp", c.ListenResp, tc.want.ListenResp},
				{"advertise-client", c.AdvertiseClient, tc.want.AdvertiseClient}, {"advertise-peer", c.AdvertisePeer, tc.want.AdvertisePeer},
				{"initial-cluster", c.InitialCluster, tc.want.InitialCluster}, {"join", c.Join, tc.want.Join},
			} {
				if f.want != "" && f.got != f.want {
					t.Errorf("%s = %q, want %q", f.field, f.got, f.want)
				}
			}
		})
	}

	root := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string // in the error
	}{
		{"no name", []string{}, "usage"},
		{"bad name", []string{"a=b"}, "instance name"},
		{"bad port", []string{"n1", "--client-port", "70000"}, "port number"},
		{"same port", []string{"n1", "--client-port", "7701"}, "given twice"},
		{"not named", []string{"n4", "--initial-cluster", "n1=h:7701,n2=h:7701,n3=h:7701"}, "does not name"},
		{"both", []string{"n1", "--initial-cluster", "n1=h:7701", "--join", "http://h:7700"}, "not both"},
		{"everywhere, no advertise", []string{"n1", "--host", "0.0.0.0", "--join", "http://h:7700"}, "--advertise-host"},
		{"unknown", []string{"n1", "--cleint-port", "1"}, "unknown argument"},
	} {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			out, err := exec.Command(script, append([]string{"create"}, append(tc.args, "--root", root)...)...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), tc.want) {
				t.Errorf("cairn-instance create %v: %v, want exit 2 and %q:\n%s", tc.args, err, tc.want, out)
			}
		})
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "etc", "cairn")); len(entries) > 0 {
		t.Errorf("refused creates left files: %v", entries)
	}

	// An existing file is kept unless --force.
	if out, err := exec.Command(script, "create", "n1", "--root", root).CombinedOutput(); err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	if out, err := exec.Command(script, "create", "n1", "--client-port", "7710", "--root", root).CombinedOutput(); err == nil || !strings.Contains(string(out), "--force") {
		t.Errorf("a second create replaced the file: %v\n%s", err, out)
	}
	if out, err := exec.Command(script, "create", "n1", "--client-port", "7710", "--peer-port", "7711", "--force", "--root", root).CombinedOutput(); err != nil {
		t.Fatalf("create --force: %v\n%s", err, out)
	}
	if c := mustLoad(t, filepath.Join(root, "etc", "cairn", "n1.yaml")); c.ListenClient != "127.0.0.1:7710" {
		t.Errorf("after --force listen-client is %q", c.ListenClient)
	}
	if out, err := exec.Command(script, "list", "--root", root).CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "n1 ") {
		t.Errorf("list: %v\n%s", err, out)
	}
}

// mustLoad reads file as cairn serve --config file does, with no flags and
// no environment, and validates it.
func mustLoad(t *testing.T, file string) *config.Config {
	t.Helper()
	d := config.Default()
	c := &d
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	f := config.RegisterFlags(fs, c)
	if err := fs.Parse([]string{"--config", file}); err != nil {
		t.Fatal(err)
	}
	if err := config.Load(fs, c, f, func(string) string { return "" }); err != nil {
		b, _ := os.ReadFile(file)
		t.Fatalf("load %s: %v\n%s", file, err, b)
	}
	if err := c.Validate(); err != nil {
		b, _ := os.ReadFile(file)
		t.Fatalf("validate %s: %v\n%s", file, err, b)
	}
	return c
}
