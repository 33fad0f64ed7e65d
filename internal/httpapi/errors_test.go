package httpapi

import (
	"bufio"
	"encoding/base64"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

// kvCodes returns every kv.Code constant declared in package kv (read from
// its source, so a code added there is checked here without anyone
// remembering to list it), CodeOK aside.
func kvCodes(t *testing.T) []kv.Code {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join("..", "..", "kv", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("kv sources: %v %v", files, err)
	}
	var codes []kv.Code
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Code" {
					continue
				}
				for _, v := range vs.Values {
					lit, ok := v.(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						t.Fatalf("%s: a Code that is not a string literal", fset.Position(v.Pos()))
					}
					s, _ := strconv.Unquote(lit.Value)
					if s != "" {
						codes = append(codes, kv.Code(s))
					}
				}
			}
		}
	}
	if len(codes) < 10 {
		t.Fatalf("found only %d codes in package kv: %v", len(codes), codes)
	}
	return codes
}

// documentedStatuses reads the table of docs/API.md's "Errors" section:
// the status of every error code on the wire.
func documentedStatuses(t *testing.T) map[string]int {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "API.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| (\\d{3}) \\| `([a-z_]+)` \\|")
	out := map[string]int{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## Errors"
			continue
		}
		if m := row.FindStringSubmatch(line); in && m != nil {
			status, _ := strconv.Atoi(m[1])
			out[m[2]] = status
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 10 {
		t.Fatalf("read only %d rows of the error table in docs/API.md: %v", len(out), out)
	}
	return out
}

// TestErrorTable checks that every service error code has an entry in
// httpErrors, and that the handler answers it with a code and status that
// docs/API.md documents: the code's own name where the contract has it.
func TestErrorTable(t *testing.T) {
	docs := documentedStatuses(t)
	a := &api{log: testLogger(t)}
	for _, code := range kvCodes(t) {
		t.Run(string(code), func(t *testing.T) {
			e, ok := httpErrors[code]
			if !ok {
				t.Fatalf("httpErrors has no entry for kv code %q", code)
			}
			status, ok := docs[e.code]
			if !ok {
				t.Fatalf("kv code %q is answered with %q, which docs/API.md does not list", code, e.code)
			}
			if e.status != status {
				t.Fatalf("kv code %q is answered %d %s; docs/API.md says %s is %d", code, e.status, e.code, e.code, status)
			}
			if _, named := docs[string(code)]; named && e.code != string(code) {
				t.Fatalf("kv code %q is answered as %q, but the contract has %q", code, e.code, code)
			}
			// What a client gets, through the one function that answers
			// errors (an identified caller: an anonymous one the rules
			// refuse is asked to authenticate instead).
			r := httptest.NewRequest("GET", "/v1/kv/k", nil)
			r = r.WithContext(auth.WithIdentity(r.Context(), auth.Identity{Name: "u", Via: "password"}))
			w := httptest.NewRecorder()
			a.fail(w, r, code.Err())
			mustError(t, w, status, e.code)
			if kv.CodeOf(code.Err()) != code {
				t.Fatalf("CodeOf(%q.Err()) = %q", code, kv.CodeOf(code.Err()))
			}
		})
	}
}

// TestErrorsFromEngine checks errors that a real service returns, not
// injected ones: a missing key, its own value limit, and its ACL checks.
func TestErrorsFromEngine(t *testing.T) {
	basic := func(user, password string) []string {
		return []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))}
	}
	_, svc := engineHandler(t,
		kvtest.Users(kvtest.User(t, "reader", "pw"), kvtest.User(t, "root", "pw")),
		kvtest.Rules(
			auth.Rule{Identity: "root", Actions: []string{"read", "write", "admin"}},
			auth.Rule{Identity: "reader", Keys: "public/", Actions: []string{"read"}},
		))
	// The handler's limit is the default 1 MiB; the service's is lower (as
	// a keyspace policy can make it), so the service refuses.
	h := New(svc, Options{Logger: testLogger(t), Authenticator: svc, Admin: svc})
	root := basic("root", "pw")
	for _, tc := range []struct {
		name   string
		rq     request
		status int
		code   string
	}{
		{"missing key", request{method: "GET", target: "/v1/kv/public/missing", hdr: root}, 404, "key_not_found"},
		{"over the service's limit", request{method: "PUT", target: "/v1/kv/public/big", body: strings.Repeat("x", testMaxValue+1), hdr: root}, 413, "value_too_large"},
		{"anonymous read", request{method: "GET", target: "/v1/kv/public/motd"}, 401, "unauthenticated"},
		{"wrong password", request{method: "GET", target: "/v1/kv/public/motd", hdr: basic("reader", "nope")}, 401, "unauthenticated"},
		{"reader writes", request{method: "PUT", target: "/v1/kv/public/motd", body: "x", hdr: basic("reader", "pw")}, 403, "permission_denied"},
		{"reader reads elsewhere", request{method: "GET", target: "/v1/kv/secret/db", hdr: basic("reader", "pw")}, 403, "permission_denied"},
		{"reader deletes", request{method: "DELETE", target: "/v1/kv/public/?prefix=true", hdr: basic("reader", "pw")}, 403, "permission_denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := mustServe(t, h, tc.rq)
			mustError(t, w, tc.status, tc.code)
			if got := w.Header().Get("WWW-Authenticate"); (tc.status == 401) != (got != "") {
				t.Errorf("WWW-Authenticate %q on %d", got, tc.status)
			}
		})
	}
	// What the rules allow works, and nothing refused was written.
	if w := mustServe(t, h, request{method: "PUT", target: "/v1/kv/public/motd", body: "hello", hdr: root}); w.Code != 200 {
		t.Fatalf("root writes: %d %s", w.Code, w.Body)
	}
	if w := mustServe(t, h, request{method: "GET", target: "/v1/kv/public/motd", hdr: basic("reader", "pw")}); w.Code != 200 || w.Body.String() != "hello" {
		t.Fatalf("reader reads: %d %s", w.Code, w.Body)
	}
	if _, err := svc.Get(kvtest.Ctx(t), "public/big", kv.ReadOptions{}); !errors.Is(err, kv.ErrKeyNotFound) {
		t.Errorf("the refused value was written: %v", err)
	}
}
