package httpapi

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"net/http/httptest"
	"testing"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/kv"
)

type oneUser struct{}

func (oneUser) Authenticate(user, password string) (auth.Identity, error) {
	if user == "u" && password == "p" {
		return auth.Identity{Name: "u", Via: "password"}, nil
	}
	return auth.Identity{}, kv.ErrUnauthenticated
}

func (oneUser) AuthRequired() bool { return true }

func (oneUser) AuthenticateToken(token string) (auth.Identity, error) {
	if token == "t" {
		return auth.Identity{Name: "tok", Via: "token"}, nil
	}
	return auth.Identity{}, kv.ErrUnauthenticated
}

func TestIdentify(t *testing.T) {
	a := &api{authn: oneUser{}}
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	cn := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{Subject: pkix.Name{CommonName: "web1"}}}}}
	unverified := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: "web1"}}}}
	cases := []struct {
		authz   string
		tls     *tls.ConnectionState
		headers map[string]string
		want    string
		wantErr bool
	}{
		{want: ""},
		{authz: basic("u:p"), want: "u"},
		{authz: basic("u:p"), tls: cn, want: "u"}, // explicit credentials win
		{authz: basic("u:x"), tls: cn, wantErr: true},
		{authz: basic("up"), wantErr: true},
		{authz: "Basic !!!", wantErr: true},
		{authz: "Bearer t", want: "tok"},
		{authz: "bearer t", want: "tok"},
		{authz: "Bearer x", wantErr: true},
		{authz: "Digest x", wantErr: true},
		{tls: cn, want: "web1"},
		{tls: unverified, want: ""}, // only a verified chain names the client
		// Headers a proxy could set are never an identity.
		{headers: map[string]string{"X-Remote-User": "admin", "X-Forwarded-User": "admin", "X-Ssl-Client-Cn": "admin"}, want: ""},
	}
	for i, c := range cases {
		r := httptest.NewRequest("GET", "/v1/auth/whoami", nil)
		if c.authz != "" {
			r.Header.Set("Authorization", c.authz)
		}
		for k, v := range c.headers {
			r.Header.Set(k, v)
		}
		r.TLS = c.tls
		id, err := a.identify(r)
		if (err != nil) != c.wantErr || (err == nil && id.Name != c.want) {
			t.Errorf("case %d: identify = %+v, %v; want %q (error %v)", i, id, err, c.want, c.wantErr)
		}
	}
}

// FuzzAuthorizationHeader: any Authorization header either fails or yields
// an identity the authenticator vouched for; it never panics and never
// yields anyone else.
func FuzzAuthorizationHeader(f *testing.F) {
	for _, s := range []string{"Basic dTpw", "Bearer t", "Basic", "Bearer ", "basic dTo=", "Basic " + base64.StdEncoding.EncodeToString([]byte("u:p:q"))} {
		f.Add(s)
	}
	a := &api{authn: oneUser{}}
	f.Fuzz(func(t *testing.T, h string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["Authorization"] = []string{h}
		id, err := a.identify(r)
		if err == nil && id.Name != "u" && id.Name != "tok" && !(h == "" && id.Name == "") {
			t.Fatalf("header %q gave identity %+v", h, id)
		}
	})
}
