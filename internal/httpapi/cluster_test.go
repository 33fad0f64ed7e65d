package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

var threeMembers = []kv.Member{
	{Name: "n1", PeerAddr: "127.0.0.1:7701", ClientURL: "http://127.0.0.1:7700", RESPAddr: "127.0.0.1:7702", Voter: true, Leader: true},
	{Name: "n2", PeerAddr: "127.0.0.1:7711", ClientURL: "http://127.0.0.1:7710", Voter: true},
	{Name: "n3", PeerAddr: "127.0.0.1:7721", Voter: false},
}

const threeMembersJSON = `{"members":[
  {"name":"n1","peer_addr":"127.0.0.1:7701","client_url":"http://127.0.0.1:7700","resp_addr":"127.0.0.1:7702","voter":true,"leader":true},
  {"name":"n2","peer_addr":"127.0.0.1:7711","client_url":"http://127.0.0.1:7710","voter":true,"leader":false},
  {"name":"n3","peer_addr":"127.0.0.1:7721","voter":false,"leader":false}]}`

func membersFake() *fakeService {
	return &fakeService{members: func(context.Context) ([]kv.Member, error) { return threeMembers, nil }}
}

// TestMembers checks that a service listing no members (nil) is answered
// with an empty list, not null. TestClusterOnEngine lists a real node's.
func TestMembers(t *testing.T) {
	f := &fakeService{members: func(context.Context) ([]kv.Member, error) { return nil, nil }}
	w := mustServe(t, mustHandler(t, f), request{method: "GET", target: "/v1/cluster/members"})
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	mustEqualJSON(t, w.Body.Bytes(), `{"members":[]}`)
}

// TestClusterOnEngine runs the membership endpoints on a real single node:
// what it lists, a learner added and removed, and the refusals.
func TestClusterOnEngine(t *testing.T) {
	h, svc := engineHandler(t)
	ctx := kvtest.Ctx(t)
	st, err := svc.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	self := kv.Member{Name: kvtest.Name, PeerAddr: st.LeaderAddr, ClientURL: "http://127.0.0.1:7700", RESPAddr: "127.0.0.1:7702"}
	if err := svc.PublishSelf(ctx, self); err != nil {
		t.Fatal(err)
	}
	n1 := `{"name":"n1","peer_addr":"` + self.PeerAddr + `","client_url":"http://127.0.0.1:7700","resp_addr":"127.0.0.1:7702","voter":true,"leader":true}`
	w := mustServe(t, h, request{method: "GET", target: "/v1/cluster/members"})
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	mustEqualJSON(t, w.Body.Bytes(), `{"members":[`+n1+`]}`)

	// A learner does not vote: adding one that is not running (yet) keeps
	// the quorum of one.
	nobody := closedAddr(t)
	w = mustServe(t, h, request{method: "POST", target: "/v1/cluster/members",
		body: `{"name":"n2","peer_addr":"` + nobody + `","client_url":"http://127.0.0.1:7710","non_voter":true}`})
	if w.Code != 201 {
		t.Fatalf("add a learner: %d %s", w.Code, w.Body)
	}
	mustEqualJSON(t, w.Body.Bytes(), `{"members":[`+n1+`,{"name":"n2","peer_addr":"`+nobody+`","client_url":"http://127.0.0.1:7710","voter":false,"leader":false}]}`)
	w = mustServe(t, h, request{method: "POST", target: "/v1/cluster/members", body: `{"name":"n2","peer_addr":"127.0.0.1:1","non_voter":true}`})
	mustError(t, w, 409, "member_exists")
	w = mustServe(t, h, request{method: "POST", target: "/v1/cluster/members", body: `{"name":"n1","peer_addr":"` + self.PeerAddr + `"}`})
	if w.Code != 201 {
		t.Fatalf("add a member as it is: %d %s", w.Code, w.Body)
	}
	w = mustServe(t, h, request{method: "DELETE", target: "/v1/cluster/members/n2"})
	if w.Code != 200 {
		t.Fatalf("remove the learner: %d %s", w.Code, w.Body)
	}
	mustEqualJSON(t, w.Body.Bytes(), `{"members":[`+n1+`]}`)
	mustError(t, mustServe(t, h, request{method: "DELETE", target: "/v1/cluster/members/n2"}), 404, "member_not_found")
	mustError(t, mustServe(t, h, request{method: "POST", target: "/v1/cluster/members/n9/promote"}), 404, "member_not_found")
	// A single voter has nobody to hand leadership to: a conflict with the
	// membership, not a member that is missing.
	mustError(t, mustServe(t, h, request{method: "POST", target: "/v1/cluster/leader/transfer"}), 409, "conflict")
	mustError(t, mustServe(t, h, request{method: "POST", target: "/v1/cluster/leader/transfer", body: `{"to":"n9"}`}), 404, "member_not_found")
	if w := mustServe(t, h, request{method: "POST", target: "/v1/cluster/leader/transfer", body: `{"to":"n1"}`}); w.Code != 200 {
		t.Fatalf("transfer to the leader itself: %d %s", w.Code, w.Body)
	}
}

// closedAddr is a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestAddMember(t *testing.T) {
	f := membersFake()
	var got kv.MemberSpec
	f.addMember = func(_ context.Context, m kv.MemberSpec) error { got = m; return nil }
	body := `{"name":"n3","peer_addr":"127.0.0.1:7721","client_url":"http://127.0.0.1:7720","resp_addr":"127.0.0.1:7722","non_voter":true}`
	w := mustServe(t, mustHandler(t, f), request{method: "POST", target: "/v1/cluster/members", body: body})
	if w.Code != 201 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	mustEqualJSON(t, w.Body.Bytes(), threeMembersJSON)
	want := kv.MemberSpec{Name: "n3", PeerAddr: "127.0.0.1:7721", ClientURL: "http://127.0.0.1:7720", RESPAddr: "127.0.0.1:7722", NonVoter: true}
	if got != want {
		t.Fatalf("AddMember(%+v)", got)
	}
	if strings.Join(f.calls, ",") != "AddMember,Members" {
		t.Fatalf("calls %v", f.calls)
	}
}

func TestAddMemberRejected(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"no name", `{"peer_addr":"a:1"}`, 400, "bad_request"},
		{"no peer addr", `{"name":"n4"}`, 400, "bad_request"},
		{"empty", ``, 400, "bad_request"},
		{"unknown field", `{"name":"n4","peer_addr":"a:1","voter":true}`, 400, "bad_request"},
		{"not json", `name=n4`, 400, "bad_request"},
		{"too large", `{"name":"` + strings.Repeat("n", 70<<10) + `","peer_addr":"a:1"}`, 413, "value_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeService{}
			mustError(t, mustServe(t, mustHandler(t, f), request{method: "POST", target: "/v1/cluster/members", body: tc.body}), tc.status, tc.code)
			mustNotCall(t, f)
		})
	}
}

func TestMemberChanges(t *testing.T) {
	for _, tc := range []struct {
		name, method, target string
		call                 string
	}{
		{"remove", "DELETE", "/v1/cluster/members/n2", "RemoveMember"},
		{"remove escaped", "DELETE", "/v1/cluster/members/n%202", "RemoveMember"},
		{"promote", "POST", "/v1/cluster/members/n2/promote", "PromoteMember"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := membersFake()
			want := strings.TrimPrefix(strings.TrimSuffix(tc.target, "/promote"), "/v1/cluster/members/")
			want = strings.ReplaceAll(want, "%20", " ")
			check := func(_ context.Context, name string) error {
				if name != want {
					t.Errorf("name %q, want %q", name, want)
				}
				return nil
			}
			f.removeMember, f.promoteMember = check, check
			w := mustServe(t, mustHandler(t, f), request{method: tc.method, target: tc.target})
			if w.Code != 200 {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			mustEqualJSON(t, w.Body.Bytes(), threeMembersJSON)
			if strings.Join(f.calls, ",") != tc.call+",Members" {
				t.Fatalf("calls %v", f.calls)
			}

			f = &fakeService{
				removeMember:  func(context.Context, string) error { return fmt.Errorf("wrapped: %w", kv.ErrMemberNotFound) },
				promoteMember: func(context.Context, string) error { return kv.ErrMemberNotFound },
			}
			mustError(t, mustServe(t, mustHandler(t, f), request{method: tc.method, target: tc.target}), 404, "member_not_found")
		})
	}
}

func TestTransferLeadership(t *testing.T) {
	for _, tc := range []struct {
		name, body, to string
		status         *kv.Status
		statusErr      error
		want           string
	}{
		{"no body", "", "", &kv.Status{Leader: "n2"}, nil, `{"leader":"n2"}`},
		{"empty object", "{}", "", &kv.Status{Leader: "n3"}, nil, `{"leader":"n3"}`},
		{"to", `{"to":"n2"}`, "n2", &kv.Status{Leader: "n2"}, nil, `{"leader":"n2"}`},
		{"leader not known yet", `{"to":"n2"}`, "n2", &kv.Status{}, nil, `{"leader":"n2"}`},
		{"status fails", ``, "", nil, kv.ErrNoLeader, `{"leader":""}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeService{
				transferLeadership: func(_ context.Context, to string) error {
					if to != tc.to {
						t.Errorf("to %q", to)
					}
					return nil
				},
				status: func(context.Context) (*kv.Status, error) { return tc.status, tc.statusErr },
			}
			h := mustHandler(t, f)
			h.(*api).leaderWait = 50 * time.Millisecond
			w := mustServe(t, h, request{method: "POST", target: "/v1/cluster/leader/transfer", body: tc.body})
			if w.Code != 200 {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			mustEqualJSON(t, w.Body.Bytes(), tc.want)
		})
	}
	t.Run("leader learned later", func(t *testing.T) {
		asked := 0
		f := &fakeService{
			transferLeadership: func(context.Context, string) error { return nil },
			status: func(context.Context) (*kv.Status, error) {
				if asked++; asked < 3 {
					return &kv.Status{}, nil
				}
				return &kv.Status{Leader: "n3"}, nil
			},
		}
		w := mustServe(t, mustHandler(t, f), request{method: "POST", target: "/v1/cluster/leader/transfer"})
		mustEqualJSON(t, w.Body.Bytes(), `{"leader":"n3"}`)
	})
	for _, body := range []string{`{"to":1}`, `{"leader":"n2"}`, `"n2"`} {
		f := &fakeService{}
		mustError(t, mustServe(t, mustHandler(t, f), request{method: "POST", target: "/v1/cluster/leader/transfer", body: body}), 400, "bad_request")
		mustNotCall(t, f)
	}
	f := &fakeService{transferLeadership: func(context.Context, string) error { return kv.ErrMemberNotFound }}
	mustError(t, mustServe(t, mustHandler(t, f), request{method: "POST", target: "/v1/cluster/leader/transfer", body: `{"to":"x"}`}), 404, "member_not_found")
}

// TestStatus checks the status of a real node: every field of the
// contract, with the node's own values.
func TestStatus(t *testing.T) {
	h, svc := engineHandler(t)
	kvtest.MustPut(t, svc, "k", "v", kv.PutOptions{})
	w := mustServe(t, h, request{method: "GET", target: "/v1/cluster/status"})
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	st, err := svc.Status(kvtest.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "leader" || st.Leader != kvtest.Name || st.Revision != 1 || st.Members != 1 || st.Term == 0 || st.CommitIndex == 0 {
		t.Fatalf("the node's own status %+v", st)
	}
	mustEqualJSON(t, w.Body.Bytes(), fmt.Sprintf(`{"name":"n1","state":"leader","leader":"n1","leader_peer_addr":%q,"term":%d,
	  "commit_index":%d,"applied_index":%d,"last_index":%d,"revision":1,"members":1,"last_contact_ms":0}`,
		st.LeaderAddr, st.Term, st.CommitIndex, st.AppliedIndex, st.LastIndex))
}

func TestHealth(t *testing.T) {
	h, _ := engineHandler(t)
	w := mustServe(t, h, request{method: "GET", target: "/healthz"})
	if w.Code != 200 {
		t.Fatalf("healthz %d", w.Code)
	}
	mustEqualJSON(t, w.Body.Bytes(), `{"ok":true}`)
	w = mustServe(t, h, request{method: "GET", target: "/readyz"})
	if w.Code != 200 {
		t.Fatalf("readyz %d", w.Code)
	}
	mustEqualJSON(t, w.Body.Bytes(), `{"ready":true}`)

	// /healthz asks the service nothing; a node that is not ready is
	// injected.
	f := &fakeService{}
	mustServe(t, mustHandler(t, f), request{method: "GET", target: "/healthz"})
	mustNotCall(t, f)
	f.ready = func() error { return fmt.Errorf("%w: catching up", kv.ErrUnavailable) }
	w = mustServe(t, mustHandler(t, f), request{method: "GET", target: "/readyz"})
	if w.Code != 503 {
		t.Fatalf("readyz %d", w.Code)
	}
	mustEqualJSON(t, w.Body.Bytes(), `{"ready":false,"error":"kv: unavailable: catching up"}`)
}

// TestErrorMapping checks every service error's status, code and headers,
// through every kind of route.
func TestErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		err        error
		status     int
		code       string
		retryAfter bool
	}{
		{kv.ErrKeyNotFound, 404, "key_not_found", false},
		{fmt.Errorf("%w: %q", kv.ErrKeyNotFound, "k"), 404, "key_not_found", false},
		{kv.ErrMemberNotFound, 404, "member_not_found", false},
		{kv.ErrMemberExists, 409, "member_exists", false},
		{kv.ErrNotJSON, 409, "not_json", false},
		{kv.ErrInvalidKey, 400, "bad_request", false},
		{kv.ErrInvalidArgument, 400, "bad_request", false},
		{kv.ErrUnsupportedMode, 400, "bad_request", false},
		{kv.ErrValueTooLarge, 413, "value_too_large", false},
		{kv.ErrPreconditionFailed, 412, "precondition_failed", false},
		{fmt.Errorf("%w: raft: no leader", kv.ErrNoLeader), 503, "no_leader", true},
		{kv.ErrUnavailable, 503, "unavailable", true},
		{context.DeadlineExceeded, 503, "unavailable", true},
		{fmt.Errorf("waiting: %w", context.Canceled), 503, "unavailable", true},
		{errors.New("disk on fire"), 500, "internal", false},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			f := &fakeService{
				get:     func(context.Context, string, kv.ReadOptions) (*kv.Record, error) { return nil, tc.err },
				list:    func(context.Context, string, kv.ListOptions) (*kv.ListResult, error) { return nil, tc.err },
				put:     func(context.Context, string, []byte, kv.PutOptions) (*kv.Record, error) { return nil, tc.err },
				patch:   func(context.Context, string, []byte) (*kv.Record, error) { return nil, tc.err },
				txn:     func(context.Context, kv.Txn) (*kv.TxnResult, error) { return nil, tc.err },
				members: func(context.Context) ([]kv.Member, error) { return nil, tc.err },
				status:  func(context.Context) (*kv.Status, error) { return nil, tc.err },
				ring:    func(context.Context, string) (*kv.RingInfo, error) { return nil, tc.err },
			}
			f.addMember = func(context.Context, kv.MemberSpec) error { return tc.err }
			f.removeMember = func(context.Context, string) error { return tc.err }
			f.transferLeadership = func(context.Context, string) error { return tc.err }
			h := mustHandler(t, f)
			for _, rq := range []request{
				{method: "GET", target: "/v1/kv/k"},
				{method: "GET", target: "/v1/kv/k?list=true"},
				{method: "PUT", target: "/v1/kv/k", body: "v"},
				{method: "DELETE", target: "/v1/kv/k"},
				{method: "PATCH", target: "/v1/kv/k", body: "{}", hdr: []string{"Content-Type", "application/merge-patch+json"}},
				{method: "POST", target: "/v1/txn", body: `{"success":[{"op":"get","key":"k"}]}`},
				{method: "GET", target: "/v1/cluster/members"},
				{method: "POST", target: "/v1/cluster/members", body: `{"name":"n","peer_addr":"a:1"}`},
				{method: "DELETE", target: "/v1/cluster/members/n"},
				{method: "POST", target: "/v1/cluster/leader/transfer"},
				{method: "GET", target: "/v1/cluster/status"},
				{method: "GET", target: "/v1/ring?key=k"},
				{method: "GET", target: reposeObjects + "k"},
				{method: "PUT", target: reposeObjects + "k", body: "v"},
				{method: "DELETE", target: reposeObjects + "k"},
				{method: "PATCH", target: reposeObjects + "k", body: "{}"},
			} {
				w := mustServe(t, h, rq)
				mustError(t, w, tc.status, tc.code)
				if got := w.Header().Get("Retry-After"); (got == "1") != tc.retryAfter {
					t.Fatalf("%s %s: Retry-After %q", rq.method, rq.target, got)
				}
			}
		})
	}
}

// TestNilAnswers checks that a service returning neither a result nor an
// error gets a 500, not a panic.
func TestNilAnswers(t *testing.T) {
	f := &fakeService{
		get:    func(context.Context, string, kv.ReadOptions) (*kv.Record, error) { return nil, nil },
		list:   func(context.Context, string, kv.ListOptions) (*kv.ListResult, error) { return nil, nil },
		put:    func(context.Context, string, []byte, kv.PutOptions) (*kv.Record, error) { return nil, nil },
		patch:  func(context.Context, string, []byte) (*kv.Record, error) { return nil, nil },
		txn:    func(context.Context, kv.Txn) (*kv.TxnResult, error) { return nil, nil },
		status: func(context.Context) (*kv.Status, error) { return nil, nil },
	}
	h := mustHandler(t, f)
	for _, rq := range []request{
		{method: "GET", target: "/v1/kv/k"},
		{method: "GET", target: "/v1/kv/k?list=true"},
		{method: "PUT", target: "/v1/kv/k"},
		{method: "PATCH", target: "/v1/kv/k", body: "{}", hdr: []string{"Content-Type", "application/merge-patch+json"}},
		{method: "POST", target: "/v1/txn", body: "{}"},
		{method: "GET", target: "/v1/cluster/status"},
	} {
		mustError(t, mustServe(t, h, rq), 500, "internal")
	}
}

func TestRouting(t *testing.T) {
	for _, tc := range []struct {
		method, target string
		status         int
		code, allow    string
	}{
		{"GET", "/", 404, "not_found", ""},
		{"GET", "/v2/kv/a", 404, "not_found", ""},
		{"GET", "/v1/cluster", 404, "not_found", ""},
		{"GET", "/v1/cluster/members/n1/demote", 404, "not_found", ""},
		{"POST", "/v1/kv/a", 405, "method_not_allowed", "DELETE, GET, HEAD, PATCH, PUT"},
		{"OPTIONS", "/v1/kv/a//b", 405, "method_not_allowed", "DELETE, GET, HEAD, PATCH, PUT"},
		{"GET", "/v1/txn", 405, "method_not_allowed", "POST"},
		{"PUT", "/v1/cluster/members", 405, "method_not_allowed", "GET, HEAD, POST"},
		{"GET", "/v1/cluster/members/n1", 405, "method_not_allowed", "DELETE"},
		{"GET", "/v1/cluster/members/n1/promote", 405, "method_not_allowed", "POST"},
		{"GET", "/v1/cluster/leader/transfer", 405, "method_not_allowed", "POST"},
		{"POST", "/v1/cluster/status", 405, "method_not_allowed", "GET, HEAD"},
		{"POST", "/healthz", 405, "method_not_allowed", "GET, HEAD"},
		{"DELETE", "/readyz", 405, "method_not_allowed", "GET, HEAD"},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			f := &fakeService{}
			w := mustServe(t, mustHandler(t, f), request{method: tc.method, target: tc.target})
			mustError(t, w, tc.status, tc.code)
			if got := w.Header().Get("Allow"); got != tc.allow {
				t.Fatalf("Allow %q, want %q", got, tc.allow)
			}
			mustNotCall(t, f)
		})
	}
}

// Another member's dashboard may read this node's status from the browser
// (its client URL is the origin allowed, never "*"); any other origin, or a
// node that cannot list its members, gets no CORS header.
func TestStatusAllowsMemberOrigins(t *testing.T) {
	members := []kv.Member{{Name: "n1", ClientURL: "http://10.0.0.1:7700"}, {Name: "n2", ClientURL: "https://n2.example:7700/"}}
	f := &fakeService{
		members: func(context.Context) ([]kv.Member, error) { return members, nil },
		status:  func(context.Context) (*kv.Status, error) { return &kv.Status{Name: "n1"}, nil },
	}
	h := mustHandler(t, f)
	for _, tc := range []struct{ origin, want string }{
		{"https://n2.example:7700", "https://n2.example:7700"},
		{"http://10.0.0.1:7700", "http://10.0.0.1:7700"},
		{"https://evil.example", ""},
		{"http://10.0.0.1:7701", ""},
		{"", ""},
	} {
		w := mustServe(t, h, request{method: "GET", target: "/v1/cluster/status", hdr: []string{"Origin", tc.origin}})
		if got := w.Header().Get("Access-Control-Allow-Origin"); w.Code != 200 || got != tc.want {
			t.Errorf("Origin %q: %d, Access-Control-Allow-Origin %q, want %q", tc.origin, w.Code, got, tc.want)
		}
		if w.Header().Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("Origin %q: credentials allowed", tc.origin)
		}
	}
	f.members = func(context.Context) ([]kv.Member, error) { return nil, kv.ErrNoLeader }
	w := mustServe(t, h, request{method: "GET", target: "/v1/cluster/status", hdr: []string{"Origin", "http://10.0.0.1:7700"}})
	if w.Code != 200 || w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("without quorum: %d, Access-Control-Allow-Origin %q", w.Code, w.Header().Get("Access-Control-Allow-Origin"))
	}
}
