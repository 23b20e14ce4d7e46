# hubgate — build, run and test. `make run` and `make test` work on a fresh
# machine: they install what they need themselves.

SHELL := /bin/bash
GO ?= go
TOOLS := $(CURDIR)/.tools
XCADDY_VERSION := v0.4.5
XCADDY := $(TOOLS)/xcaddy
CADDY := $(CURDIR)/bin/caddy
# xcaddy.json pins the Caddy version, the plugins and the replacements; it
# has the shape of xcaddy's own Builder.
XCADDY_ARGS := $(shell python3 -c 'import json;c=json.load(open("xcaddy.json"));print(c["caddy_version"],*["--with "+p["module_path"]+("@"+p["version"] if p.get("version") else "") for p in c["plugins"]],*["--replace "+r["old"]+"="+r["new"] for r in c["replacements"]])')
# What bin/caddy is built from: the plugin's non-test Go files (not the
# tests, the benchmark driver or the images' own programs).
GO_SOURCES := $(shell find caddymodule policies spawner internal -name '*.go' -not -name '*_test.go') $(wildcard caddymodule/pages/templates/*.html) go.mod go.sum xcaddy.json
TEST_TIMEOUT ?= 30m
# xcaddy resolves the plugin's packages through the module proxy before it
# uses the local replacement; a proxy that answers 403 (not 404) for an
# unknown module stops that search, so fall through to "off" on any error.
XCADDY_GOPROXY ?= $(shell $(GO) env GOPROXY | sed -e 's/,direct$$//' -e 's/|off$$//')|off

.PHONY: all build run images test test-deps unit e2e lint check-versions clean bench bench-replicas fuzz fuzz-short redis-deps k8s-tools image-hubgate bench-k8s

all: build

$(XCADDY):
	GOBIN=$(TOOLS) $(GO) install github.com/caddyserver/xcaddy/cmd/xcaddy@$(XCADDY_VERSION)

## build: the Caddy binary with the hubgate plugin, at bin/caddy
build: $(CADDY)

$(CADDY): $(XCADDY) $(GO_SOURCES)
	@$(MAKE) --no-print-directory check-versions
	mkdir -p bin
	GOPROXY='$(XCADDY_GOPROXY)' $(XCADDY) build $(XCADDY_ARGS) --output $(CADDY)
	$(CADDY) list-modules | grep -q '^http.handlers.hubgate$$'

## check-versions: go.mod's Caddy version must equal xcaddy.json's
check-versions:
	@want=$$(python3 -c 'import json;print(json.load(open("xcaddy.json"))["caddy_version"])'); \
	have=$$($(GO) list -m -f '{{.Version}}' github.com/caddyserver/caddy/v2); \
	if [ "$$want" != "$$have" ]; then echo "go.mod has caddy $$have but xcaddy.json pins $$want" >&2; exit 1; fi

## images: the test images the default policy and the tests use; each is
## rebuilt only when its inputs change (hubgate/jupyter-debian, Jupyter with
## Python 3 and R: debootstrap, about 5-10 min and ~510 MB the first time,
## needs root)
images: image-testapp image-restic
	images/jupyter-debian/build.sh hubgate/jupyter-debian:latest
	images/rsession-standin/build.sh hubgate/rsession-standin:latest

## image-testapp: the quick test app (a static Go binary FROM scratch)
.PHONY: image-testapp
image-testapp:
	images/testapp/build.sh hubgate/testapp:latest

## image-restic: the backup helper (Debian's restic, its libc and a static
## Go helper, FROM scratch; needs Debian's restic package, installed by
## test-deps)
.PHONY: image-restic
image-restic:
	@command -v restic >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq restic >/dev/null; } || \
		{ echo "restic is missing: apt-get install restic" >&2; exit 1; }
	images/restic/build.sh hubgate/restic:latest

## images-prod: the production images hubgate/jupyterlab and hubgate/rstudio
## (docker-stacks bases: needs a registry; see images/README.md)
.PHONY: images-prod
images-prod:
	images/build-prod.sh

## image-hubgate: the gateway's own image (FROM scratch, static bin/caddy)
## for deploy/kubernetes; no registry needed
image-hubgate: $(XCADDY) $(GO_SOURCES)
	rm -rf .run/image-hubgate && mkdir -p .run/image-hubgate
	CGO_ENABLED=0 GOPROXY='$(XCADDY_GOPROXY)' $(XCADDY) build $(XCADDY_ARGS) --output .run/image-hubgate/caddy
	cp deploy/kubernetes/passwd /etc/ssl/certs/ca-certificates.crt .run/image-hubgate/
	docker build -q -t hubgate:latest -f deploy/kubernetes/Dockerfile .run/image-hubgate

## k8s-tools: etcd, kube-apiserver, kube-scheduler and kwok for the
## Kubernetes tests, built from tools/k8s into $$HOME/.cache/hubgate/k8s/
## (about 10 min cold on 2 cores, under a second warm)
k8s-tools:
	tools/k8s/build.sh

## k8s-node-tools: what the real test node needs (Debian's containerd, runc
## and CNI plugins; kubelet and kube-controller-manager built into
## $$HOME/.cache/hubgate/k8s-node/, ~10 min cold on an idle machine, 1 s
## warm; the pause and test images)
.PHONY: k8s-node-tools
k8s-node-tools: k8s-tools
	@dpkg -s containerd runc containernetworking-plugins >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd runc containernetworking-plugins >/dev/null; }
	mkdir -p $(HOME)/.cache/hubgate && flock $(HOME)/.cache/hubgate/k8s-node.lock tools/k8s/build-node.sh
	images/pause/build.sh hubgate/pause:latest
	images/testapp/build.sh hubgate/testapp:latest

## run: build, build the images the example policy uses, serve
## https://localhost:8443 with a local account. The Jupyter notebook
## (example-notebook.yaml) is offered when hubgate/jupyter-debian is built
## or can be (root, the first time 5-10 min); else the test app only,
## with a message saying why. HUBGATE_RUN_NOTEBOOK=off skips it.
run: build image-testapp
	@mkdir -p .run/policy
	@if [ ! -s .run/password ]; then head -c 18 /dev/urandom | base64 | tr -d '+/=' > .run/password; fi
	@if [ ! -s .run/policy/accounts.yaml ]; then \
		printf '# Generated by make run: the local account of the embedded default.\naccounts:\n  admin: "%s"\n' \
		"$$($(CADDY) hash-password --plaintext "$$(cat .run/password)")" > .run/policy/accounts.yaml; fi
	@cp policies/example.yaml .run/policy/example.yaml
	@if images/jupyter-debian/make-run.sh hubgate/jupyter-debian:latest; then \
		cp policies/example-notebook.yaml .run/policy/example-notebook.yaml; \
	else rm -f .run/policy/example-notebook.yaml; fi
	@echo
	@echo "  hubgate is starting on https://localhost:$${HUBGATE_HTTPS_PORT:-8443}/"
	@echo "  log in as: admin   password: $$(cat .run/password)   (kept in .run/password)"
	@if [ -f .run/policy/example-notebook.yaml ]; then \
		echo "  servers: Jupyter Notebook (Python 3 and R) and the test app"; \
	else echo "  servers: the test app only (see the message above for the notebook)"; fi
	@echo "  the certificate comes from Caddy's internal CA: accept the browser's warning once."
	@echo
	HUBGATE_POLICY=$(CURDIR)/.run/policy $(CADDY) run --config Caddyfile --adapter caddyfile

## redis-deps: Debian's redis-server, which the redis storage tests start
## on their own ports (the package's own service is not used)
redis-deps:
	@if ! command -v redis-server >/dev/null; then \
		if [ "$$(id -u)" != 0 ]; then echo "redis-server is missing; run as root or install Debian's redis-server" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; fi

## test-deps: what the tests need on a Debian machine (Chromium for the browser tests)
test-deps: redis-deps
	@if ! command -v restic >/dev/null; then \
		if [ "$$(id -u)" != 0 ]; then echo "restic is missing; run as root or install Debian's restic" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic >/dev/null; fi
	@if ! command -v chromium >/dev/null; then \
		if [ "$$(id -u)" != 0 ]; then echo "chromium is missing; run as root or install Debian's chromium" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi
	@docker info >/dev/null 2>&1 || { echo "the Docker engine is not reachable: the tests need it" >&2; exit 1; }
	@# Chromium aborts requests in flight (ERR_NETWORK_CHANGED) when a host
	@# interface gains an address; without this every container start would
	@# give the host side of its veth an IPv6 link-local address. Loopback
	@# and existing interfaces keep IPv6.
	@if [ "$$(id -u)" = 0 ]; then sysctl -qw net.ipv6.conf.default.disable_ipv6=1 || true; fi

## lint: gofmt and go vet
lint:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.tools/*')); if [ -n "$$out" ]; then echo "gofmt needed: $$out" >&2; exit 1; fi
	$(GO) vet ./...

## test: everything, against the real Docker engine, Caddy and Chromium
## (packages one at a time: their containers and networks would otherwise
## disturb each other's browser tests)
test: test-deps build images lint k8s-tools k8s-node-tools fuzz-short
	HUBGATE_CADDY=$(CADDY) $(GO) test -race -count=1 -p 1 -timeout $(TEST_TIMEOUT) ./...

## unit: the tests that need neither Docker nor a browser
unit: redis-deps
	$(GO) test -race -count=1 ./caddymodule/... ./policies/...

## fuzz: every Go fuzz target for FUZZTIME each (default 1m), one at a
## time (go test runs one -fuzz target per invocation); new failing inputs
## land in the package's testdata/fuzz/ to be committed with the fix.
## fuzz-short: the same for FUZZ_SHORT each (20,000 inputs: a count, not a
## duration, since a duration sometimes ends in "context deadline exceeded"
## from the fuzzing engine itself), as make test runs them.
FUZZTIME ?= 1m
FUZZ_SHORT ?= 20000x
FUZZ_TARGETS := ./policies:FuzzParse ./policies/username:FuzzCanonical ./spawner:FuzzContainerNames ./spawner:FuzzEscapeName \
	./caddymodule/session:FuzzOpen ./caddymodule/web:FuzzUserPath ./caddymodule/login:FuzzSafeNext \
	./caddymodule/hub:FuzzIdentityHeader ./caddymodule:FuzzUnmarshalCaddyfile
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t##*:} in $${t%%:*} for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$${t##*:}$$" -fuzztime=$(FUZZTIME) $${t%%:*}; done
fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZ_SHORT)

## screenshots: drive Chromium through login, home, progress, a running
## notebook, the admin page and an error page; PNGs in docs/screenshots/
.PHONY: screenshots
screenshots: test-deps build images
	HUBGATE_SCREENSHOTS=$(CURDIR)/docs/screenshots HUBGATE_CADDY=$(CADDY) $(GO) test -count=1 -run '^TestPagesInTheBrowser$$' ./e2e/

## bench: hubgate beside direct, plain Caddy reverse_proxy,
## configurable-http-proxy and oauth2-proxy on loopback (http and https,
## 100 B and 64 KiB, 1 and 64 connections, websockets), cold start with
## the Debian Jupyter image, 200 users at once; writes bench/results.md
## (~6-8 min), then the Kubernetes scale figures (bench-k8s).
## BENCH_SCALE=1 adds up to 1,000 running servers; bench/run/main.go lists
## the BENCH_* knobs.
OAUTH2_PROXY_VERSION := v7.15.6
OAUTH2_PROXY := $(HOME)/.cache/hubgate/oauth2-proxy-$(OAUTH2_PROXY_VERSION)/oauth2-proxy

$(OAUTH2_PROXY):
	GOBIN=$(dir $@) $(GO) install github.com/oauth2-proxy/oauth2-proxy/v7@$(OAUTH2_PROXY_VERSION)

bench: build image-testapp $(OAUTH2_PROXY)
	@for p in wrk:wrk configurable-http-proxy:node-configurable-http-proxy taskset:util-linux; do \
		command -v $${p%%:*} >/dev/null && continue; \
		if [ "$$(id -u)" != 0 ]; then echo "$${p%%:*} is missing; run as root or install Debian's $${p#*:}" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $${p#*:} >/dev/null; done
	-images/jupyter-debian/build.sh hubgate/jupyter-debian:latest
	$(GO) build -o bench/out/bin/ ./bench/run ./bench/wsrtt
	BENCH_OAUTH2_PROXY=$(OAUTH2_PROXY) bench/out/bin/run
	@$(MAKE) --no-print-directory bench-k8s
	@$(MAKE) --no-print-directory bench-replicas

## bench-replicas: req/s of a running server through a Caddy balancer with
## one hubgate replica behind it and with three (e2e harness, real
## processes); writes bench/out/replicas.txt.
bench-replicas: build image-testapp
	mkdir -p bench/out
	HUBGATE_CADDY=$(CADDY) $(GO) test -count=1 -run '^$$' -bench Replicas -benchtime 5s ./e2e/ | tee bench/out/replicas.txt

## bench-k8s: 1,000 pods through the Kubernetes backend on a kwok node (time
## to all Running and routed, API calls per pod, informer memory, Get cost);
## HUBGATE_K8S_SCALE_PODS changes the number. Writes bench/out/k8s-scale.txt.
bench-k8s: k8s-tools
	mkdir -p bench/out
	$(GO) test -count=1 -run '^$$' -bench Scale -benchtime 1x -timeout 30m ./spawner/kubernetes/ | tee bench/out/k8s-scale.txt

clean:
	rm -rf bin .run
