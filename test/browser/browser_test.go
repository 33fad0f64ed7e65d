package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cairnkv/cairn/test/cluster"
)

// findChromium returns the browser to drive: $CAIRN_CHROMIUM, else the
// first of chromium, chromium-browser on $PATH.
func findChromium() (string, error) {
	if p := os.Getenv("CAIRN_CHROMIUM"); p != "" {
		return exec.LookPath(p)
	}
	var err error
	for _, name := range []string{"chromium", "chromium-browser"} {
		var p string
		if p, err = exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no chromium, chromium-browser on PATH and CAIRN_CHROMIUM unset: %w", err)
}

// artifacts is where screenshots go: $CAIRN_ARTIFACTS, else a directory of
// the test's own.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CAIRN_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// apiClient calls a node's HTTP API with optional Basic credentials.
type apiClient struct {
	t          *testing.T
	user, pass string
}

func (a apiClient) do(method, url, body string) (int, string) {
	a.t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if a.user != "" {
		req.SetBasicAuth(a.user, a.pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (a apiClient) must(method, url, body string) string {
	a.t.Helper()
	code, b := a.do(method, url, body)
	if code/100 != 2 {
		a.t.Fatalf("%s %s: %d %s", method, url, code, b)
	}
	return b
}

// TestDashboard loads /ui/ from one node of a 3-node cluster and checks what
// an operator relies on: the members and the leader, the ring's arcs of every
// node (and that the page hashes keys as the server does), the keyspaces, a
// key written over the API in the key browser, a key written from the
// browser readable over the API, a stopped node marked down, and signing in
// once ACL rules exist.
func TestDashboard(t *testing.T) {
	if os.Getenv("CAIRN_BROWSER_TEST") != "1" {
		t.Skip("the browser test runs with CAIRN_BROWSER_TEST=1 (make browser); it needs chromium")
	}
	chromium, err := findChromium()
	if err != nil {
		t.Skipf("skipped: %v (apt-get install chromium, or set CAIRN_CHROMIUM)", err)
	}
	out := artifacts(t)
	t.Logf("chromium %s; screenshots in %s", chromium, out)

	c := cluster.New(t, 3, cluster.Options{})
	base := func(i int) string { return "http://" + c.Nodes[i].ClientAddr }
	api := apiClient{t: t}
	api.must(http.MethodPut, base(1)+"/v1/kv/app/greeting", "hello")
	api.must(http.MethodPut, base(1)+"/v1/kv/app/db/url", "postgres://db:5432")
	api.must(http.MethodPut, base(0)+"/v1/keyspaces/cache/", `{"mode":"eventual","replicas":2}`)
	api.must(http.MethodPut, base(2)+"/v1/kv/cache/session", "s-123")

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // CI runs as root, where chromium's sandbox will not start
		chromedp.WindowSize(1400, 1200),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	defer cancelCtx()
	// The first action starts the browser, on a context without a deadline
	// (one would stop the browser); the rest run under one.
	messages := chromedp.Console(ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start %s: %v", chromium, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	// Script exceptions and policy violations fail the test; other console
	// errors (a member the browser may not read cross-origin) are logged.
	var mu sync.Mutex
	var pageErrors []string
	done := make(chan struct{})
	// The reader logs to t: end it before the test completes (the deferred
	// cancels close the browser, which ends the messages).
	t.Cleanup(func() {
		cancelCtx()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			switch {
			case m.IsException() || strings.Contains(m.Text, "Content Security Policy"):
				mu.Lock()
				pageErrors = append(pageErrors, m.String()+" at "+m.URL)
				mu.Unlock()
			case m.Type == chromedp.ConsoleError:
				t.Logf("browser console: %s %s", m.Text, m.URL)
			}
		}
	}()
	checkPage := func() {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		for _, e := range pageErrors {
			t.Error(e)
		}
		pageErrors = nil
	}
	run := func(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// waitFor polls a JavaScript condition until it is true.
	waitFor := func(t *testing.T, what, cond string, d time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
			dump, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main").innerText.slice(0, 3000) + "\nbanner: " + document.getElementById("banner").textContent`))
			shot(ctx, t, out, "failed.png")
			t.Fatalf("%s: not within %s (%v); the page shows:\n%s", what, d, err, dump)
		}
		return time.Since(start)
	}
	str := func(t *testing.T, expr string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return v
	}

	run(t, "load /ui", chromedp.Navigate(base(0)+"/ui"))
	if loc := str(t, `location.pathname`); loc != "/ui/" {
		t.Errorf("/ui led to %q, want /ui/", loc)
	}

	t.Run("members", func(t *testing.T) {
		waitFor(t, "3 members, all up, one leader",
			`document.querySelectorAll('#members tbody tr[data-up="up"]').length === 3 && document.querySelectorAll('#members tbody tr[data-leader="true"]').length === 1`, 20*time.Second)
		leader := str(t, `document.querySelector('#members tbody tr[data-leader="true"]').dataset.name`)
		if want := c.Nodes[c.Leader()].Name; leader != want {
			t.Errorf("the page shows %s as leader, the cluster says %s", leader, want)
		}
		// Every member lets this page's origin (a member's client URL)
		// read its status: each row has its own term and indices.
		waitFor(t, "every member's own status read",
			`document.querySelectorAll('#members tbody tr[data-read="true"]').length === 3`, 10*time.Second)
	})

	t.Run("ring", func(t *testing.T) {
		waitFor(t, "ring arcs of 3 nodes", `new Set([...document.querySelectorAll('#ring path.arc')].filter(p => Number(p.dataset.arcs) > 100).map(p => p.dataset.node)).size === 3`, 10*time.Second)
		// The page computes the vnode tokens itself: its hash of a key must
		// be the server's.
		var ring struct {
			Hash       string   `json:"hash"`
			Preference []string `json:"preference"`
		}
		if err := json.Unmarshal([]byte(api.must(http.MethodGet, base(0)+"/v1/ring?key=cache/session", "")), &ring); err != nil {
			t.Fatal(err)
		}
		run(t, "place a key", chromedp.SendKeys(chromedp.CSS("#ring-key"), "cache/session"), chromedp.Click(chromedp.CSS(`#ring-key-form button`)))
		waitFor(t, "the key's hash", `document.getElementById('ring-key-hash') !== null`, 5*time.Second)
		hash := str(t, `document.getElementById('ring-key-hash').textContent`)
		pref := str(t, `document.getElementById('ring-key-preference').textContent`)
		mine := str(t, `xxh64String("cache/session").toString(16).padStart(16, "0")`)
		if hash != ring.Hash || mine != ring.Hash {
			t.Errorf("hash of cache/session: page shows %q, page computes %q, server says %q", hash, mine, ring.Hash)
		}
		if want := strings.Join(ring.Preference, ", "); !strings.Contains(pref, want) {
			t.Errorf("preference %q, want %q", pref, want)
		}
		// The ranges the page draws have the server's owners: its
		// preference list of a key is the server's.
		for i := range 20 {
			key := fmt.Sprintf("cache/k%d", i)
			var got struct {
				Preference []string `json:"preference"`
			}
			_ = json.Unmarshal([]byte(api.must(http.MethodGet, base(0)+"/v1/ring?key="+key, "")), &got)
			if page := str(t, fmt.Sprintf(`cairnDashboard.preference(%q, 2).join(",")`, key)); page != strings.Join(got.Preference, ",") {
				t.Errorf("owners of %s: page %s, server %v", key, page, got.Preference)
			}
		}
		// Pointing at the ring names the range there and its owners.
		str(t, `(() => { const b = document.getElementById('ring').getBoundingClientRect();
			document.getElementById('ring').dispatchEvent(new MouseEvent('mousemove', {clientX: b.left + b.width / 2 + 3, clientY: b.top + 4, bubbles: true})); return ""; })()`)
		if p := str(t, `document.getElementById('ring-point').textContent`); !regexp.MustCompile(`^range \([0-9a-f]{16}, [0-9a-f]{16}\]: owned by n[123], then n[123], n[123]$`).MatchString(p) {
			t.Errorf("pointing at the ring: %q", p)
		}
		// Longer keys take XXH64's other code paths (4-, 8- and 32-byte steps).
		for _, k := range []string{"a", "abcd", "abcdefgh", "0123456789abcdef0123456789abcdef-and-more/é"} {
			var got struct {
				Hash string `json:"hash"`
			}
			_ = json.Unmarshal([]byte(api.must(http.MethodGet, base(0)+"/v1/ring?key="+urlEscape(k), "")), &got)
			mine = str(t, fmt.Sprintf(`xxh64String(%q).toString(16).padStart(16, "0")`, k))
			if mine != got.Hash {
				t.Errorf("hash of %q: page %s, server %s", k, mine, got.Hash)
			}
		}
	})

	t.Run("keyspaces", func(t *testing.T) {
		waitFor(t, "the keyspaces", `document.querySelector('#keyspaces tr[data-prefix="cache/"] .mode-eventual') !== null && document.querySelector('#keyspaces tr[data-prefix=""]') !== null`, 10*time.Second)
	})

	t.Run("keys", func(t *testing.T) {
		waitFor(t, "the key written over the API", `document.querySelector('#keys tr[data-key="app/greeting"]') !== null`, 10*time.Second)
		run(t, "search app/db", chromedp.SendKeys(chromedp.CSS("#prefix"), "app/db"), chromedp.Click(chromedp.CSS("#search-submit")))
		waitFor(t, "the prefix search", `document.querySelectorAll('#keys tbody tr').length === 1 && document.querySelector('#keys tr[data-key="app/db/url"]') !== null`, 5*time.Second)
		run(t, "open app/db/url", chromedp.Click(chromedp.CSS(`#keys tr[data-key="app/db/url"] a`)))
		waitFor(t, "the value", `(document.getElementById('value-body') || {}).textContent === "postgres://db:5432"`, 5*time.Second)
		meta := str(t, `document.querySelector('#value-view table.meta').textContent`)
		if !strings.Contains(meta, "x-cairn-revision") {
			t.Errorf("value metadata %q lacks x-cairn-revision", meta)
		}
		// An eventual key shows the replicas that hold it.
		str(t, `(document.getElementById("prefix").value = "", "")`)
		run(t, "search cache/", chromedp.SendKeys(chromedp.CSS("#prefix"), "cache/"), chromedp.Click(chromedp.CSS("#search-submit")))
		waitFor(t, "cache/session listed", `document.querySelector('#keys tr[data-key="cache/session"] a') !== null`, 5*time.Second)
		run(t, "open cache/session", chromedp.Click(chromedp.CSS(`#keys tr[data-key="cache/session"] a`)))
		waitFor(t, "its replicas", `/held by 2 replicas/.test((document.getElementById('key-replicas') || {}).textContent || "")`, 5*time.Second)

		// Write from the browser, read over the API of another node.
		run(t, "put from the form",
			chromedp.SendKeys(chromedp.CSS("#put-key"), "ui/written"),
			chromedp.SendKeys(chromedp.CSS("#put-value"), "from the browser"),
			chromedp.Click(chromedp.CSS("#put-submit")))
		waitFor(t, "the put's answer", `/^wrote ui\/written at revision \d+/.test(document.getElementById('put-result').textContent)`, 5*time.Second)
		if got := api.must(http.MethodGet, base(2)+"/v1/kv/ui/written", ""); got != "from the browser" {
			t.Errorf("GET ui/written on n3: %q", got)
		}
		waitFor(t, "the written key shown", `(document.getElementById('value-body') || {}).textContent === "from the browser"`, 5*time.Second)
		str(t, `(document.getElementById("prefix").value = "", "")`)
		run(t, "back to every key", chromedp.Click(chromedp.CSS("#search-submit")))
		waitFor(t, "every key listed", `document.querySelectorAll('#keys tbody tr').length === 4`, 5*time.Second)
		checkPage()
		time.Sleep(2500 * time.Millisecond) // one more refresh: the rates panel has two scrapes
		shot(ctx, t, out, "dashboard.png")

		// Delete from the browser (two clicks: the first arms the button).
		run(t, "open ui/written", chromedp.Click(chromedp.CSS(`#keys tr[data-key="ui/written"] a`)))
		waitFor(t, "ui/written shown", `(document.getElementById('value-body') || {}).textContent === "from the browser"`, 5*time.Second)
		run(t, "delete", chromedp.Click(chromedp.CSS("#delete-key")), chromedp.Click(chromedp.CSS("#delete-key")))
		waitFor(t, "the delete's answer", `/deleted ui\/written \(1 key\)/.test((document.getElementById('delete-result') || {}).textContent || "")`, 5*time.Second)
		if code, _ := api.do(http.MethodGet, base(1)+"/v1/kv/ui/written", ""); code != http.StatusNotFound {
			t.Errorf("GET ui/written after the delete: %d, want 404", code)
		}

		// Pages of 20 keys, the next one after the last key of the page.
		for i := range 25 {
			api.must(http.MethodPut, fmt.Sprintf("%s/v1/kv/page/%02d", base(1), i), "v")
		}
		str(t, `(document.getElementById("prefix").value = "", "")`)
		run(t, "search page/", chromedp.SendKeys(chromedp.CSS("#prefix"), "page/"), chromedp.Click(chromedp.CSS("#search-submit")))
		waitFor(t, "the first page", `document.querySelectorAll('#keys tbody tr').length === 20 && !document.getElementById('page-next').disabled && document.getElementById('page-first').disabled`, 5*time.Second)
		run(t, "next page", chromedp.Click(chromedp.CSS("#page-next")))
		waitFor(t, "the second page", `document.querySelectorAll('#keys tbody tr').length === 5 && document.querySelector('#keys tbody tr').dataset.key === "page/20" && document.getElementById('page-next').disabled`, 5*time.Second)
		time.Sleep(2500 * time.Millisecond) // a refresh keeps the page
		if n := str(t, `String(document.querySelectorAll('#keys tbody tr').length) + " " + document.querySelector('#keys tbody tr').dataset.key`); n != "5 page/20" {
			t.Errorf("after a refresh the second page shows %s", n)
		}
		run(t, "first page", chromedp.Click(chromedp.CSS("#page-first")))
		waitFor(t, "the first page again", `document.querySelectorAll('#keys tbody tr').length === 20 && document.querySelector('#keys tbody tr').dataset.key === "page/00"`, 5*time.Second)

		// A key a path must escape, with a value that is not text.
		odd := "odd/a b?c#d%25é"
		api.must(http.MethodPut, base(1)+"/v1/kv/odd/a%20b%3Fc%23d%2525%C3%A9", "\xff\x00\x01")
		str(t, `(document.getElementById("prefix").value = "", "")`)
		run(t, "search odd/", chromedp.SendKeys(chromedp.CSS("#prefix"), "odd/"), chromedp.Click(chromedp.CSS("#search-submit")))
		waitFor(t, "the odd key listed", fmt.Sprintf(`document.querySelector('#keys tbody tr a') !== null && document.querySelector('#keys tbody tr').dataset.key === %q`, odd), 5*time.Second)
		run(t, "open the odd key", chromedp.Click(chromedp.CSS("#keys tbody tr a")))
		waitFor(t, "its value in hex", `(document.getElementById('value-body') || {}).textContent === "ff 00 01"`, 5*time.Second)
	})

	t.Run("metrics", func(t *testing.T) {
		// Either live rates or "metrics unavailable": never a broken panel.
		waitFor(t, "the rates panel", `document.querySelector('#rates-table tr[data-frontend="HTTP"] .rate') !== null || document.getElementById('metrics-unavailable') !== null`, 10*time.Second)
		t.Logf("rates panel: %s", str(t, `document.getElementById('rates').textContent`))
		// Where the node has the request metrics, the page must show them.
		if code, body := api.do(http.MethodGet, base(0)+"/metrics", ""); code == http.StatusOK && strings.Contains(body, "cairn_http_requests_total") {
			waitFor(t, "an HTTP request rate", `/^\d+\.\d\/s$/.test((document.querySelector('#rates-table tr[data-frontend="HTTP"] .rate') || {}).textContent || "")`, 10*time.Second)
		} else {
			t.Logf("/metrics answers %d without cairn_http_requests_total: only the fallback is checked", code)
		}
	})

	t.Run("page functions", func(t *testing.T) {
		// What the cluster here cannot show: a mirror's status, metric
		// families with labels and the series around them, keys with dot
		// segments.
		for expr, want := range map[string]string{
			`cairnDashboard.encodeKey("a/../b c")`: "a%2F..%2Fb%20c",
			`(() => { try { cairnDashboard.encodeKey(".."); return "no error" } catch (e) { return e.message } })()`: `the key ".." cannot be sent from a browser (it folds dot segments); use the CLI`,
			`JSON.stringify(cairnDashboard.parseMetrics([
				'# TYPE cairn_http_requests_total counter',
				'cairn_http_requests_total{route="kv",method="GET",code="2xx"} 7',
				'cairn_http_requests_total{route="kv",method="PUT",code="4xx"} 3',
				'cairn_http_requests_refused_total 2',
				'cairn_http_connections_open 4',
				'cairn_http_request_duration_seconds_bucket{route="kv",method="GET",le="0.001"} 5',
				'cairn_http_request_duration_seconds_bucket{route="kv",method="GET",le="+Inf"} 7',
				'cairn_http_request_duration_seconds_sum{route="kv",method="GET"} 0.01',
				'cairn_http_request_duration_seconds_count{route="kv",method="GET"} 7',
				'cairn_resp_commands_total{command="get",outcome="ok"} 1',
				'cairn_raft_term 2'].join("\n")))`: `{"HTTP":{"total":10,"outcomes":{"2xx":7,"4xx":3},"count":7,"sum":0.01,"buckets":{"0.001":5,"+Inf":7},"refused":2,"open":4},"RESP":{"total":1,"outcomes":{"ok":1},"count":null,"sum":null,"buckets":{},"refused":null,"open":null}}`,
			`String(cairnDashboard.quantile(0.5, {"0.001": 1, "0.01": 1, "+Inf": 1}, {"0.001": 5, "0.01": 9, "+Inf": 9}))`: "0.001",
			`String(cairnDashboard.parseMetrics("cairn_raft_term 2\nsome_other_total 3").HTTP)`:                            "undefined",
			`(cairnDashboard.renderMirrors([{"prefix": "app/", "bucket": "s3://b/app", "mode": "strong", "active": true, "cursor": 41, "behind": 2, "puts": 40, "deletes": 1}]),
				document.querySelector('#mirrors tr[data-prefix="app/"] .progress').textContent)`: "at revision 41, 2 behind",
		} {
			if got := str(t, expr); got != want {
				t.Errorf("%s\n= %s\nwant %s", expr, got, want)
			}
		}
	})

	t.Run("node down", func(t *testing.T) {
		const stop = 2 // not node 0, which serves the page
		name := c.Nodes[stop].Name
		c.Stop(stop)
		took := waitFor(t, name+" marked down", fmt.Sprintf(`document.querySelector('#members tr[data-name=%q][data-up="down"]') !== null`, name), 15*time.Second)
		t.Logf("%s marked down %s after it stopped", name, took.Round(100*time.Millisecond))
		waitFor(t, "its arcs dimmed", fmt.Sprintf(`document.querySelector('#ring path.arc.damaged[data-node=%q]') !== null`, name), 5*time.Second)
		shot(ctx, t, out, "node-down.png")
	})

	t.Run("sign in", func(t *testing.T) {
		api.must(http.MethodPut, base(0)+"/v1/auth/users/root", `{"password":"root-pw"}`)
		root := apiClient{t: t, user: "root", pass: "root-pw"}
		// The user is committed; n1 may apply it a moment later.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			code, b := root.do(http.MethodPut, base(0)+"/v1/auth/rules", `{"rules":[{"identity":"root","actions":["read","write","admin"]}]}`)
			if code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("PUT /v1/auth/rules as root: %d %s", code, b)
			}
		}
		run(t, "reload", chromedp.Reload())
		waitFor(t, "the 401 message", `/Sign in: this cluster needs credentials \(401\)/.test(document.getElementById('banner').textContent)`, 10*time.Second)
		shot(ctx, t, out, "sign-in.png")
		run(t, "sign in", chromedp.SendKeys(chromedp.CSS("#login-user"), "root"), chromedp.SendKeys(chromedp.CSS("#login-secret"), "wrong"), chromedp.Click(chromedp.CSS("#login-submit")))
		waitFor(t, "a wrong password refused", `/Sign-in refused \(401\)/.test(document.getElementById('banner').textContent)`, 5*time.Second)
		str(t, `(document.getElementById("login-user").value = "", "")`)
		run(t, "sign in again", chromedp.SendKeys(chromedp.CSS("#login-user"), "root"),
			chromedp.SendKeys(chromedp.CSS("#login-secret"), "root-pw"), chromedp.Click(chromedp.CSS("#login-submit")))
		waitFor(t, "signed in", `/signed in as root \(password\)/.test(document.getElementById('identity').textContent) && document.getElementById('banner').hidden`, 5*time.Second)
		waitFor(t, "members as root", `document.querySelectorAll('#members tbody tr').length === 3 && document.querySelector('#keys tr[data-key="app/greeting"]') !== null`, 10*time.Second)
		stored := str(t, `sessionStorage.getItem("cairn.auth") || ""`)
		if !strings.Contains(stored, "root") {
			t.Errorf("credentials not kept in sessionStorage: %q", stored)
		}

		// A token, and an identity that may read but not administer or write.
		var tok struct {
			Token string `json:"token"`
		}
		if err := json.Unmarshal([]byte(root.must(http.MethodPost, base(0)+"/v1/auth/users/root/tokens", "")), &tok); err != nil {
			t.Fatal(err)
		}
		root.must(http.MethodPut, base(0)+"/v1/auth/users/reader", `{"password":"reader-pw"}`)
		root.must(http.MethodPut, base(0)+"/v1/auth/rules", `{"rules":[{"identity":"root","actions":["read","write","admin"]},{"identity":"reader","actions":["read"]}]}`)
		run(t, "sign out", chromedp.Click(chromedp.CSS("#logout")))
		waitFor(t, "signed out", `!document.getElementById('login').hidden && /not signed in/.test(document.getElementById('identity').textContent)`, 5*time.Second)
		str(t, `(document.getElementById("login-kind").value = "bearer", document.getElementById("login-kind").dispatchEvent(new Event("change")), "")`)
		run(t, "sign in with the token", chromedp.SendKeys(chromedp.CSS("#login-secret"), tok.Token), chromedp.Click(chromedp.CSS("#login-submit")))
		waitFor(t, "signed in by token", `/signed in as root \(token\)/.test(document.getElementById('identity').textContent)`, 5*time.Second)
		if stored := str(t, `sessionStorage.getItem("cairn.auth") || ""`); !strings.Contains(stored, "bearer") {
			t.Errorf("token not kept in sessionStorage: %q", stored)
		}
		run(t, "sign out again", chromedp.Click(chromedp.CSS("#logout")))
		str(t, `(document.getElementById("login-kind").value = "basic", document.getElementById("login-kind").dispatchEvent(new Event("change")), document.getElementById("login-user").value = "", "")`)
		run(t, "sign in as reader", chromedp.SendKeys(chromedp.CSS("#login-user"), "reader"), chromedp.SendKeys(chromedp.CSS("#login-secret"), "reader-pw"), chromedp.Click(chromedp.CSS("#login-submit")))
		waitFor(t, "keyspaces refused to reader", `/Not allowed for reader \(403\)/.test(document.getElementById('keyspaces-error').textContent) && document.querySelector('#keys tr[data-key="app/greeting"]') !== null`, 10*time.Second)
		str(t, `(document.getElementById("put-key").value = "", document.getElementById("put-value").value = "", "")`)
		run(t, "put as reader", chromedp.SendKeys(chromedp.CSS("#put-key"), "app/nope"), chromedp.SendKeys(chromedp.CSS("#put-value"), "x"), chromedp.Click(chromedp.CSS("#put-submit")))
		waitFor(t, "the put refused", `/Not allowed for reader \(403\)/.test(document.getElementById('put-result').textContent)`, 5*time.Second)
		shot(ctx, t, out, "forbidden.png")
	})

	t.Run("page's node down", func(t *testing.T) {
		c.Stop(0)
		waitFor(t, "the banner", `/^This node does not answer/.test(document.getElementById('banner').textContent) && document.querySelectorAll('#members tbody tr').length === 0`, 10*time.Second)
	})
	checkPage()
}

// TestServedByNode checks, without a browser, that a node serves the
// dashboard's files under /ui/ with their types and its security policy.
func TestServedByNode(t *testing.T) {
	c := cluster.New(t, 1, cluster.Options{})
	base := "http://" + c.Nodes[0].ClientAddr
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(base + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d to %q, want 301 to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	for path, ctype := range map[string]string{"/ui/": "text/html; charset=utf-8", "/ui/app.js": "text/javascript; charset=utf-8", "/ui/style.css": "text/css; charset=utf-8"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ctype {
			t.Errorf("GET %s: %d %q, want 200 %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), ctype)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	if resp, err := http.Get(base + "/ui/nope.js"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /ui/nope.js: %v %v, want 404", resp, err)
	} else {
		resp.Body.Close()
	}
}

// shot saves a full-page screenshot and logs where.
func shot(ctx context.Context, t *testing.T, dir, name string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	t.Logf("screenshot %s (%d bytes)", p, len(buf))
}

func urlEscape(k string) string {
	var b bytes.Buffer
	for _, c := range []byte(k) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '/' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
