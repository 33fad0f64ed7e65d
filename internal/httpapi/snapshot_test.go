package httpapi

import (
	"bytes"
	"encoding/base64"
	"testing"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/internal/backup/snapfile"
	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

// GET /v1/snapshot streams a whole snapshot file to admins only.
func TestSnapshotEndpoint(t *testing.T) {
	h, svc := engineHandler(t,
		kvtest.Users(kvtest.User(t, "bob", "pw"), kvtest.User(t, "root", "pw")),
		kvtest.Rules(
			auth.Rule{Identity: "root", Actions: []string{"read", "write", "admin"}},
			auth.Rule{Identity: "bob", Actions: []string{"read", "write"}},
		))
	kvtest.MustPut(t, svc, "a", "1", kv.PutOptions{})
	basic := func(u string) []string {
		return []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":pw"))}
	}
	mustError(t, mustServe(t, h, request{method: "GET", target: "/v1/snapshot", hdr: basic("bob")}), 403, "permission_denied")
	mustError(t, mustServe(t, h, request{method: "GET", target: "/v1/snapshot?consistency=maybe", hdr: basic("root")}), 400, "bad_request")
	mustError(t, mustServe(t, h, request{method: "POST", target: "/v1/snapshot", hdr: basic("root")}), 405, "method_not_allowed")
	for _, target := range []string{"/v1/snapshot", "/v1/snapshot?consistency=local"} {
		w := mustServe(t, h, request{method: "GET", target: target, hdr: basic("root")})
		if w.Code != 200 || w.Header().Get("Content-Type") != "application/octet-stream" {
			t.Fatalf("%s: %d %s", target, w.Code, w.Body.String())
		}
		info, err := snapfile.Verify(bytes.NewReader(w.Body.Bytes()))
		if err != nil || info.StrongKeys != 1 || info.Users != 0 {
			t.Fatalf("%s: %+v %v", target, info, err)
		}
	}
}
