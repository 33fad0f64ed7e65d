# cairn build and test entry points. `make test` is what README and .ci/run call.
GO        ?= go
BIN       := bin/cairn
PKGS      := ./...
export CGO_ENABLED ?= 0

.PHONY: build run test race lint chaos security fuzz bench proto clean s3-tools browser image docker-test k8s-validate systemd-test

build:
	$(GO) build -o $(BIN) ./cmd/cairn

# A single node with the embedded defaults (data in ./cairn-data).
run: build
	./$(BIN) serve

test:
	$(GO) test -count=1 -timeout 15m $(PKGS)

race:
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m $(PKGS)

# gofmt, go vet, staticcheck and errorlint (pinned as tools in go.mod, so
# `go tool` fetches them from the module proxy on a fresh machine), and the
# import rules (internal/layering: front ends never reach the engines,
# raftnode, store or peer).
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)
	$(GO) tool go-errorlint $(PKGS)
	$(GO) test -count=1 ./internal/layering/

# Fault injection with the harness (test/harness, checked by test/model):
# the same workload, nemesis and checks on in-process clusters (server/,
# a faultinject build: TestNemesisSweep, every fault kind an in-process
# cluster can make against 3 and 5 nodes; then the partition and lease
# runs and the in-process proofs that the checker catches a broken read
# path; CHAOS_RUNS=2 repeats these) and on real processes (test/chaos: every
# fault kind against 3 and 5 nodes, kill -9 and SIGSTOP included, the
# process stale-read proof, the proof that the watch check catches a build
# whose watch streams drop events, the Docker variant where a Docker engine
# answers, and the eventual convergence runs:
# writers and deletes on eventual keyspaces under every fault kind, clock
# skew within the bound and a spare's join and removal included, in process
# and on 3 and 5 processes, a clock beyond the bound, and the proofs that
# the check fails on nodes without anti-entropy and read repair; every
# eventual run also checks each node's materialized directory against the
# converged end state and the mirror bucket of a mirrored keyspace against
# it (with the bucket taken down as a fault), and builds whose materializers
# drop deletes or whose mirrors drop refused writes must fail those checks),
# then
# kill -9 durability (test/process). Every strong run also has two watchers
# follow its keys through the faults, checked by test/model's watch model.
# See docs/TESTING.md.
CHAOS_RUNS ?= 1
NEMESIS_SEEDS ?= 1
CHAOS_SEEDS ?= 1
chaos:
	$(GO) test -tags faultinject -count=1 -timeout 14m -run 'TestNemesisSweep' ./server/ \
		-args -nemesis -nemesis.seeds $(NEMESIS_SEEDS)
	$(GO) test -tags faultinject -count=$(CHAOS_RUNS) -timeout 14m \
		-run 'Linearizable|CheckerCatches|MinorityPartition|LeaderLoss|FullRestart|LaggingFollower' ./server/
	$(GO) test -count=1 -timeout 14m -v -run 'TestChaos$$' ./test/chaos/ \
		-args -chaos.long -chaos.seeds $(CHAOS_SEEDS)
	$(GO) test -count=1 -timeout 5m -run 'TestCrashDurability' ./test/process/

# The dashboard (/ui) in a real browser: test/browser drives chromium with
# chromedp against a 3-node in-process cluster (about 15 s); it skips
# without chromium ($$CAIRN_CHROMIUM, chromium or chromium-browser).
# Screenshots go to BROWSER_ARTIFACTS. See docs/TESTING.md.
BROWSER_ARTIFACTS ?= $(or $(TMPDIR),/tmp)/cairn-browser
browser:
	CAIRN_BROWSER_TEST=1 CAIRN_ARTIFACTS=$(BROWSER_ARTIFACTS) $(GO) test -count=1 -timeout 4m -v -run 'TestDashboard' ./test/browser/

# The worked example of docs/SECURITY.md, run for real: openssl certificates,
# 3 nodes with peer mTLS and client-cert-auth, ACLs over HTTP and RESP,
# rotation without restart. Needs openssl, curl and redis-cli.
security: build
	bash scripts/security-example

# Short native fuzzing of every parser. FUZZTIME is a count of inputs per
# target (Nx), not a duration: with a duration, go1.26's fuzz coordinator can
# report "context deadline exceeded" as a failure when the time runs out
# under load (golang/go#75804, fixed in Go 1.27; it failed CI once here).
FUZZTIME ?= 100000x
fuzz:
	@for spec in $$($(GO) test -list 'Fuzz.*' $(PKGS) 2>/dev/null | grep -E '^(Fuzz|ok)' | awk '/^Fuzz/{f=f" "$$1} /^ok/{if(f!=""){print $$2":"f}; f=""}' | tr ' ' ','); do \
		pkg=$${spec%%:*}; for f in $$(echo $${spec#*:} | tr ',' ' '); do \
			echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; done

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

proto:
	@echo "no protobuf definitions yet (gRPC/Connect front end is a later issue)"

# The S3 server of the s3:// backup tests (test/process
# TestScheduledBackupsToS3, which skips without it): versitygw, built from
# the module proxy into .tools/ (git-ignored), about a minute on two cores.
VERSITYGW_VERSION := v1.8.0
TOOLS := $(CURDIR)/.tools
s3-tools: $(TOOLS)/versitygw-$(VERSITYGW_VERSION)/versitygw
	@mkdir -p $(TOOLS)/bin && ln -sf ../versitygw-$(VERSITYGW_VERSION)/versitygw $(TOOLS)/bin/versitygw
$(TOOLS)/versitygw-$(VERSITYGW_VERSION)/versitygw:
	GOBIN=$(TOOLS)/versitygw-$(VERSITYGW_VERSION) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

# A FROM scratch image of the host's static binary (deploy/Dockerfile.scratch),
# tagged cairn:dev, which deploy/compose.yaml runs. Pulls nothing. IMAGE sets
# the tag.
IMAGE ?= cairn:dev
image: build
	rm -rf bin/image && mkdir -p bin/image/data bin/image/tmp && chmod 1777 bin/image/tmp
	cp $(BIN) bin/image/cairn
	docker build -q -f deploy/Dockerfile.scratch -t $(IMAGE) bin/image

# The 3-node cluster of deploy/compose.yaml, for real where a Docker engine
# answers (it skips otherwise): build the image, compose up, a write on one
# node read on another, compose down -v; then the StatefulSet's settings in
# containers (TLS, bootstrap, scale up by join, scale down). See docs/DEPLOY.md.
docker-test:
	$(GO) test -count=1 -timeout 5m -v -run 'TestCompose|TestKubernetesFlow' ./deploy/ -args -docker

# The Kubernetes manifests, strictly decoded into the API types and checked
# (deploy/k8s/validate is its own module, so k8s.io/api stays out of go.mod).
k8s-validate:
	cd deploy/k8s/validate && $(GO) test -count=1 ./...

# The systemd units (systemd-analyze verify where it exists) and the
# cairn-instance script, which writes a config the config package loads.
systemd-test:
	$(GO) test -count=1 -v -run 'TestSystemd|TestInstance' ./deploy/

clean:
	rm -rf bin
