package layering

import (
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/cairnkv/cairn"

// A rule says that no package matching From may depend (directly or through
// other packages, test files excluded) on a package matching any of Not.
// Patterns are package paths relative to the module; a trailing "/..."
// matches the package and everything below it.
type rule struct {
	why  string
	from []string
	not  []string
}

var (
	frontEnds = []string{"internal/httpapi", "internal/respapi", "internal/grpcapi", "internal/webui"}
	engines   = []string{"internal/strong", "internal/eventual/..."}
	consensus = []string{"internal/raftnode", "internal/store", "internal/peer"}
)

var rules = []rule{
	{"front ends reach data through kv.Service only", frontEnds, append(append([]string{"server"}, engines...), consensus...)},
	{"kv is the front door: it calls engines through kv.Engine and kv.Control", []string{"kv"}, append(append([]string{"server"}, engines...), consensus...)},
	{"engines never know who calls them", engines, append(append([]string{"server"}, frontEnds...), "client", "internal/cli")},
	{"the peer port, the store and the Go client stand alone", []string{"internal/peer", "internal/store", "client"}, []string{"..."}},
	{"raftnode is consensus only (the base of rsm)", []string{"internal/raftnode"}, append(append([]string{"kv", "server"}, engines...), frontEnds...)},
	{"the replicated-state-machine framework does not depend on the kv service", []string{"rsm/...", "internal/rsm/..."}, []string{"kv", "server"}},
	{"policies, identities and configuration are plain types", []string{"keyspace", "auth", "config"}, append(append(append([]string{"kv", "server"}, engines...), frontEnds...), consensus...)},
}

// pkg is what go list says of one package.
type pkg struct {
	ImportPath string
	Deps       []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages; run from inside the module", len(pkgs))
	}
	return pkgs
}

func matches(pattern, rel string) bool {
	if pattern == "..." {
		return true
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return rel == base || strings.HasPrefix(rel, base+"/")
	}
	return rel == pattern
}

func matchesAny(patterns []string, rel string) bool {
	for _, p := range patterns {
		if matches(p, rel) {
			return true
		}
	}
	return false
}

// violations checks every rule against the packages and returns one line per
// forbidden dependency.
func violations(pkgs []pkg) []string {
	var out []string
	for _, p := range pkgs {
		rel, ok := strings.CutPrefix(p.ImportPath, module+"/")
		if !ok {
			continue
		}
		for _, r := range rules {
			if !matchesAny(r.from, rel) {
				continue
			}
			for _, d := range p.Deps {
				drel, ok := strings.CutPrefix(d, module+"/")
				if ok && drel != rel && matchesAny(r.not, drel) {
					out = append(out, fmt.Sprintf("%s depends on %s: %s", rel, drel, r.why))
				}
			}
		}
	}
	return out
}

func TestImportRules(t *testing.T) {
	for _, v := range violations(listPackages(t)) {
		t.Error(v)
	}
}

// The rules must catch a violation: a front end that reaches the store, a
// store that imports kv, an engine that imports a front end.
func TestRulesCatchViolations(t *testing.T) {
	bad := []pkg{
		{ImportPath: module + "/internal/respapi", Deps: []string{module + "/kv", module + "/internal/store"}},
		{ImportPath: module + "/internal/store", Deps: []string{module + "/kv"}},
		{ImportPath: module + "/internal/strong", Deps: []string{module + "/internal/httpapi"}},
		{ImportPath: module + "/kv", Deps: []string{module + "/internal/eventual/ring"}},
	}
	got := violations(bad)
	if len(got) != 4 {
		t.Fatalf("want 4 violations, got %d: %q", len(got), got)
	}
	good := []pkg{
		{ImportPath: module + "/internal/respapi", Deps: []string{module + "/kv", module + "/auth", "github.com/tidwall/redcon"}},
		{ImportPath: module + "/internal/strong", Deps: []string{module + "/kv", module + "/internal/raftnode", module + "/internal/store"}},
	}
	if got := violations(good); len(got) != 0 {
		t.Fatalf("false violations: %q", got)
	}
}
