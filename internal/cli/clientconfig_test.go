package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// runEnv runs the command line with the given environment only.
func runEnv(t *testing.T, environ map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return environ[k] }, Version: "test"})
	return code, out.String(), errb.String()
}

func mustWrite(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // not subject to umask
		t.Fatal(err)
	}
	return path
}

type viewJSON struct {
	Config    string            `json:"config"`
	Endpoints []string          `json:"endpoints"`
	Timeout   string            `json:"timeout"`
	CACert    string            `json:"cacert"`
	Cert      string            `json:"cert"`
	Key       string            `json:"key"`
	User      string            `json:"user"`
	Password  string            `json:"password"`
	Token     string            `json:"token"`
	Sources   map[string]string `json:"sources"`
}

func mustView(t *testing.T, environ map[string]string, args ...string) viewJSON {
	t.Helper()
	code, out, errOut := runEnv(t, environ, append(args, "config", "view", "-o", "json")...)
	if code != ExitOK {
		t.Fatalf("cairn %v config view: exit %d: %s", args, code, errOut)
	}
	var v viewJSON
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("config view: %v: %s", err, out)
	}
	return v
}

// Each setting comes from the flag, else CAIRN_*, else the file, else the default.
func TestClientConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := mustWrite(t, filepath.Join(dir, "client.yaml"), `
endpoints: [http://file:1, http://file:2]
timeout: 3s
tls: {ca: ca.pem, cert: c.pem, key: k.pem}
`, 0o600)
	cases := []struct {
		name      string
		env       map[string]string
		args      []string
		endpoints string
		source    string
		timeout   string
	}{
		{"default", nil, []string{"--config", ""}, "http://127.0.0.1:7700", "default", "10s"},
		{"file", nil, []string{"--config", file}, "http://file:1,http://file:2", "file", "3s"},
		{"env over file", map[string]string{"CAIRN_ENDPOINTS": "http://env:1", "CAIRN_TIMEOUT": "4s"}, []string{"--config", file},
			"http://env:1", "env CAIRN_ENDPOINTS", "4s"},
		{"flag over env", map[string]string{"CAIRN_ENDPOINTS": "http://env:1"}, []string{"--config", file, "--endpoints", "http://flag:1", "--timeout", "5s"},
			"http://flag:1", "flag", "5s"},
		{"file from env", map[string]string{clientConfigEnv: file}, nil, "http://file:1,http://file:2", "file", "3s"},
		{"default path", map[string]string{"XDG_CONFIG_HOME": filepath.Join(dir, "xdg")}, nil, "http://xdg:1", "file", "10s"},
		{"home fallback", map[string]string{"HOME": filepath.Join(dir, "home")}, nil, "http://home:1", "file", "10s"},
		{"relative XDG ignored", map[string]string{"XDG_CONFIG_HOME": "xdg", "HOME": filepath.Join(dir, "home")}, nil, "http://home:1", "file", "10s"},
		{"flag beats default path", map[string]string{"XDG_CONFIG_HOME": filepath.Join(dir, "xdg")}, []string{"--config", file}, "http://file:1,http://file:2", "file", "3s"},
		{"empty --config skips the default", map[string]string{"XDG_CONFIG_HOME": filepath.Join(dir, "xdg")}, []string{"--config="}, "http://127.0.0.1:7700", "default", "10s"},
	}
	mustWrite(t, filepath.Join(dir, "xdg", "cairn", "client.yaml"), "endpoints: http://xdg:1\n", 0o600)
	mustWrite(t, filepath.Join(dir, "home", ".config", "cairn", "client.yaml"), "endpoints: http://home:1\n", 0o600)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := mustView(t, tc.env, tc.args...)
			if got := strings.Join(v.Endpoints, ","); got != tc.endpoints || v.Sources["endpoints"] != tc.source || v.Timeout != tc.timeout {
				t.Fatalf("endpoints %s from %s, timeout %s; want %s from %s, %s", got, v.Sources["endpoints"], v.Timeout, tc.endpoints, tc.source, tc.timeout)
			}
		})
	}

	// The certificate and key are one setting: a flag never pairs with the file's key.
	v := mustView(t, map[string]string{"CAIRN_CACERT": "/env/ca.pem"}, "--config", file, "--cert", "/f/c.pem", "--key", "/f/k.pem")
	if v.CACert != "/env/ca.pem" || v.Cert != "/f/c.pem" || v.Key != "/f/k.pem" {
		t.Fatalf("TLS: %+v", v)
	}
	if code, _, errOut := runEnv(t, nil, "--config", file, "--cert", "/f/c.pem", "config", "view"); code != ExitUsage || !strings.Contains(errOut, "go together") {
		t.Fatalf("--cert without --key over a file pair: exit %d %s", code, errOut)
	}
}

// Credentials: the highest layer naming a user or a token decides the kind;
// a password is never taken from below the user's layer.
func TestClientConfigCredentials(t *testing.T) {
	dir := t.TempDir()
	alice := mustWrite(t, filepath.Join(dir, "alice.yaml"), "user: alice\npassword: pw-alice\n", 0o600)
	userOnly := mustWrite(t, filepath.Join(dir, "user.yaml"), "user: alice\n", 0o600)
	token := mustWrite(t, filepath.Join(dir, "token.yaml"), "token: tok-file\n", 0o600)
	both := mustWrite(t, filepath.Join(dir, "both.yaml"), "user: alice\ntoken: tok\n", 0o600)
	cases := []struct {
		name              string
		env               map[string]string
		args              []string
		user, pass, token string
	}{
		{"file", nil, []string{"--config", alice}, "alice", redacted, ""},
		{"flag user drops the file's password", nil, []string{"--config", alice, "--user", "bob"}, "bob", "", ""},
		{"flag user:password", nil, []string{"--config", alice, "--user", "bob:pw"}, "bob", redacted, ""},
		{"env password with the file's user", map[string]string{"CAIRN_PASSWORD": "pw"}, []string{"--config", userOnly}, "alice", redacted, ""},
		{"flag user over the file's token", nil, []string{"--config", token, "--user", "bob:pw"}, "bob", redacted, ""},
		{"env token over the file's user", map[string]string{"CAIRN_TOKEN": "t"}, []string{"--config", alice}, "", "", redacted},
		{"file token", nil, []string{"--config", token}, "", "", redacted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := mustView(t, tc.env, tc.args...)
			if v.User != tc.user || v.Password != tc.pass || v.Token != tc.token {
				t.Fatalf("user %q password %q token %q; want %q %q %q", v.User, v.Password, v.Token, tc.user, tc.pass, tc.token)
			}
		})
	}
	if code, _, errOut := runEnv(t, nil, "--config", both, "config", "view"); code != ExitUsage || !strings.Contains(errOut, both) {
		t.Fatalf("user and token in one file: exit %d %s", code, errOut)
	}
	if code, _, _ := runEnv(t, nil, "--config", "", "--user", "a", "--token", "t", "config", "view"); code != ExitUsage {
		t.Fatalf("--user and --token: exit %d", code)
	}
}

// A file's paths are relative to its directory, wherever cairn runs; what the
// file names is what the requests carry.
func TestClientConfigRelativePaths(t *testing.T) {
	var mu sync.Mutex
	var gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotAuth = r.Header.Get("Authorization")
		mu.Unlock()
		w.Write([]byte("value"))
	}))
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "secrets", "token"), "tok-from-file\n", 0o600)
	file := mustWrite(t, filepath.Join(dir, "client.yaml"), "endpoints: ["+srv.URL+"]\ntls: {ca: certs/ca.pem}\ntoken_file: secrets/token\n", 0o600)
	v := mustView(t, nil, "--config", file)
	if want := filepath.Join(dir, "certs", "ca.pem"); v.CACert != want {
		t.Fatalf("tls.ca resolved to %q, want %q", v.CACert, want)
	}
	if v.Token != redacted || v.Sources["token"] != "file token_file" {
		t.Fatalf("token %q from %q", v.Token, v.Sources["token"])
	}

	// The CA file is missing: the error says where the path came from.
	if code, _, errOut := runEnv(t, nil, "--config", file, "get", "k"); code == ExitOK || !strings.Contains(errOut, "ca.pem") {
		t.Fatalf("missing CA: exit %d %s", code, errOut)
	}
	noTLS := mustWrite(t, filepath.Join(dir, "notls.yaml"), "endpoints: ["+srv.URL+"]\ntoken_file: secrets/token\n", 0o600)
	if code, out, errOut := runEnv(t, nil, "--config", noTLS, "get", "k"); code != ExitOK || out != "value" {
		t.Fatalf("get through the file: exit %d %q %s", code, out, errOut)
	}
	mu.Lock()
	defer mu.Unlock()
	if gotAuth != "Bearer tok-from-file" {
		t.Fatalf("Authorization %q", gotAuth)
	}
}

// Unknown keys are refused with the key, its line and the file named.
func TestClientConfigUnknownKeys(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, content string
		want          []string
	}{
		{"top level", "endpoints: [http://a:1]\nendpionts: [http://b:1]\n", []string{`unknown key "endpionts"`, "line 2"}},
		{"in tls", "tls:\n  ca: x\n  capath: y\n", []string{`unknown key "tls.capath"`, "line 3"}},
		{"hint", "cacert: ca.pem\n", []string{`unknown key "cacert"`, "tls: {ca: FILE}"}},
		{"replds layout", "client:\n  url: http://a:1\n", []string{`unknown key "client"`, "top level"}},
		{"server config", "name: n1\ndata-dir: /var/lib/cairn\n", []string{`unknown key "data-dir"`, "cairn serve --config"}},
		{"every key", "a: 1\nb: 2\n", []string{`"a"`, `"b"`}},
		{"not a mapping", "- http://a:1\n", []string{"mapping"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := mustWrite(t, filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml"), tc.content, 0o600)
			code, _, errOut := runEnv(t, nil, "--config", file, "get", "k")
			if code != ExitUsage || !strings.Contains(errOut, file) {
				t.Fatalf("exit %d, stderr %s", code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q: %s", w, errOut)
				}
			}
		})
	}
	// An empty file has no settings, and that is fine.
	empty := mustWrite(t, filepath.Join(dir, "empty.yaml"), "", 0o600)
	if v := mustView(t, nil, "--config", empty); v.Sources["endpoints"] != "default" {
		t.Fatalf("empty file: %+v", v)
	}
}

// A missing default file is fine; a missing file that was asked for is not.
func TestClientConfigMissingFile(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.yaml")
	if v := mustView(t, map[string]string{"XDG_CONFIG_HOME": dir, "HOME": dir}); v.Config != "none" {
		t.Fatalf("missing default file: %+v", v)
	}
	for name, tc := range map[string]struct {
		env  map[string]string
		args []string
	}{
		"flag": {nil, []string{"--config", missing}},
		"env":  {map[string]string{clientConfigEnv: missing}, nil},
	} {
		code, _, errOut := runEnv(t, tc.env, append(tc.args, "get", "k")...)
		if code != ExitUsage || !strings.Contains(errOut, missing) {
			t.Errorf("%s: exit %d, stderr %s", name, code, errOut)
		}
	}
	// serve keeps its own --config (the server's file) and never reads the client's.
	bad := mustWrite(t, filepath.Join(dir, "xdg", "cairn", "client.yaml"), "bogus: 1\n", 0o600)
	if code, _, errOut := runEnv(t, map[string]string{"XDG_CONFIG_HOME": filepath.Dir(filepath.Dir(bad))}, "serve", "--config", missing); code != ExitUsage ||
		strings.Contains(errOut, "client config") {
		t.Fatalf("serve --config: exit %d %s", code, errOut)
	}
}

// A file holding a secret that group or others can read gets a warning, as
// ssh gives for private keys; a 0600 file does not.
func TestClientConfigSecretsWarning(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no mode bits")
	}
	dir := t.TempDir()
	cases := []struct {
		name, content string
		mode          os.FileMode
		warn          bool
	}{
		{"password open", "user: a\npassword: pw\n", 0o644, true},
		{"token group", "token: t\n", 0o640, true},
		{"password private", "user: a\npassword: pw\n", 0o600, false},
		{"no secret open", "endpoints: [http://a:1]\nuser: a\n", 0o644, false},
		{"token_file open", "token_file: tok\n", 0o600, true},
	}
	mustWrite(t, filepath.Join(dir, "tok"), "t\n", 0o644)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := mustWrite(t, filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml"), tc.content, tc.mode)
			code, _, errOut := runEnv(t, nil, "--config", file, "config", "view")
			if code != ExitOK {
				t.Fatalf("exit %d %s", code, errOut)
			}
			if got := strings.Contains(errOut, "Warning:") && strings.Contains(errOut, "chmod 600"); got != tc.warn {
				t.Fatalf("warning %v, want %v: %q", got, tc.warn, errOut)
			}
		})
	}
}
