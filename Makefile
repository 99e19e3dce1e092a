# jibril — see README.md. Everything a fresh machine needs beyond Go, gcc and npm is fetched here.
GO        ?= go
QJS       := quickjs-wasm
QJS_DIST  := $(QJS)/node_modules/@jitl/quickjs-ng-wasmfile-release-sync/dist
STATE_DIR ?= $(CURDIR)/var
PKGS      ?= ./...

.PHONY: all build run test vet bench generate wasm demo fuzz clean

all: build

# The QuickJS-NG wasm is fetched by npm from the committed lock file, sha256-checked against
# quickjs-wasm/module.sha256, and its import/export table generated and checked by qjsgen.
$(QJS)/module.wasm $(QJS)/names_gen.go: $(QJS)/package.json $(QJS)/package-lock.json $(QJS)/module.sha256 $(wildcard $(QJS)/glue/*.go $(QJS)/cmd/qjsgen/*.go)
	cd $(QJS) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	$(GO) run ./$(QJS)/cmd/qjsgen -wasm $(QJS_DIST)/emscripten-module.wasm -glue $(QJS_DIST)/emscripten-module.mjs \
		-sha256 $(QJS)/module.sha256 -out $(QJS)/names_gen.go -origin "@jitl/quickjs-ng-wasmfile-release-sync@0.32.0"
	cp $(QJS_DIST)/emscripten-module.wasm $(QJS)/module.wasm

wasm: $(QJS)/module.wasm

build: wasm
	$(GO) build -o bin/jibril ./cmd/jibril

run: build
	./bin/jibril run --state-dir $(STATE_DIR)

vet: wasm
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfel\.go$$'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet $(PKGS)

test: vet build
	$(GO) test -p 2 -timeout 25m -count=1 $(PKGS)
	./bin/jibril test

demo: build
	sh tests/demo/demo.sh

bench: build
	$(GO) run ./cmd/jibril-bench -out bench/results.json -md BENCHMARKS.md

# Runs every fuzz target for $(FUZZTIME), one after another. A crasher is written to the
# package's testdata/fuzz/<target>/ and from then on runs with every plain go test.
FUZZTIME ?= 5m

fuzz: wasm
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./recipes
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./recipes/policy
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRecord$$' -fuzztime $(FUZZTIME) ./bpf
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./engine/event
	$(GO) test -run '^$$' -fuzz '^FuzzParseAnswer$$' -fuzztime $(FUZZTIME) ./engine/dnscache
	$(GO) test -run '^$$' -fuzz '^FuzzCompileMatch$$' -fuzztime $(FUZZTIME) ./engine/match
	$(GO) test -run '^$$' -fuzz '^FuzzClean$$' -fuzztime $(FUZZTIME) ./engine/lexpath
	$(GO) test -run '^$$' -fuzz '^FuzzHelperABI$$' -fuzztime $(FUZZTIME) ./sandbox
	$(GO) test -run '^$$' -fuzz '^FuzzSplitSections$$' -fuzztime $(FUZZTIME) ./sandbox

# Regenerates what is derived from third-party inputs: the QuickJS name table and the BPF objects
# (the latter with the pinned clang from Debian, see bpf/README.md).
generate:
	rm -f $(QJS)/names_gen.go
	$(MAKE) wasm
	$(GO) generate ./bpf/...

clean:
	rm -rf bin $(QJS)/node_modules $(QJS)/module.wasm $(QJS)/names_gen.go
