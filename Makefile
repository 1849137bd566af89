# kubemend — build, test and run.  `make help` lists the targets.
#
# Sources are found recursively: every .c under operator/, watch/ and reconcilers/ except
# operator/cmd/main.c goes into libkubemend.a; every tests/unit/test_*.c becomes one cmocka binary
# linked against it (plus tests/unit/support/*.c).  Adding a module or a folder needs no Makefile
# edit.

PREFIX ?= /usr/local
DESTDIR ?=
BUILD ?= build
PYTHON ?= /usr/bin/python3
KUBECTL ?= $(shell command -v kubectl 2>/dev/null || echo /usr/bin/kubectl)
PYTEST_ARGS ?= -q

PKGS := libcurl openssl libcjson libwebsockets yaml-0.1 gmp
CFLAGS ?= -O2 -g
WARN := -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE
# pkg-config runs once, lazily, after `deps` made sure the packages are there.
PKG_CFLAGS = $(eval PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS)))$(PKG_CFLAGS)
PKG_LIBS = $(eval PKG_LIBS := $(shell pkg-config --libs $(PKGS)))$(PKG_LIBS)
CMOCKA_LIBS = $(eval CMOCKA_LIBS := $(shell pkg-config --libs cmocka))$(CMOCKA_LIBS)
ALL_CFLAGS = $(WARN) $(CFLAGS) -I. $(PKG_CFLAGS) -MMD -MP
ALL_LIBS = $(PKG_LIBS) -lpthread -lm

VERSION := $(shell git describe --always --dirty 2>/dev/null || echo 0.1.0)

# $(call rwildcard,DIRS,PATTERN): files matching PATTERN in DIRS and every folder below them.
rwildcard = $(foreach d,$(wildcard $(addsuffix /*,$(1))),$(call rwildcard,$(d),$(2)) \
              $(filter $(subst *,%,$(2)),$(d)))
SRC_DIRS := operator watch reconcilers
MAIN_SRC := operator/cmd/main.c
LIB_SRC := $(filter-out $(MAIN_SRC),$(call rwildcard,$(SRC_DIRS),*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB := $(BUILD)/libkubemend.a
BIN := $(BUILD)/kubemend
SUPPORT_SRC := $(wildcard tests/unit/support/*.c)
SUPPORT_OBJ := $(SUPPORT_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES := $(FUZZ_SRC:tests/fuzz/%.c=%)
FUZZ_REPLAY := $(FUZZ_NAMES:%=$(BUILD)/fuzz-replay/%)
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tools/%)
C_FILES := $(call rwildcard,$(SRC_DIRS),*.c) $(call rwildcard,$(SRC_DIRS),*.h) \
           $(wildcard tests/unit/*.[ch] tests/unit/support/*.[ch] tests/tools/*.[ch] tests/fuzz/*.[ch])

ASAN_FLAGS := -O1 -g -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer \
              -fno-sanitize-recover=all
# The libFuzzer build (tests/fuzz/README.md): clang, the library instrumented for coverage.
FUZZ_BUILD ?= build-fuzz
FUZZ_CFLAGS := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
               -fno-sanitize-recover=all
FUZZ_TIME ?= 60
FUZZ_SMOKE_TIME ?= 1
FUZZ_TARGETS ?= $(FUZZ_NAMES)

.PHONY: all build deps test test-unit test-integration test-apisim asan lint format clean install \
        demo bench help reliability test-reliability fuzz fuzz-build test-fuzz
.PHONY: image test-image test-e2e test-e2e-scale test-bridge bench-real
.DEFAULT_GOAL := all
# keep object files of tests and tools (make would delete them as intermediates)
.SECONDARY:

help:
	@echo "make [all]     build $(BIN) and the test tools (make build: the same)"
	@echo "make test      build and run every test (units, integration, apisim, real-server e2e, image)"
	@echo "make asan      the same tests with an ASan+UBSan build (in build-asan/)"
	@echo "make test-bridge  the zero-downtime bridge on the real servers, the key recovered from tokens (minutes)"
	@echo "make demo      full recovery of the seed cluster after a PKI rebuild (real control plane, else apisim)"
	@echo "make bench     recovery at scale vs. the kubectl procedure (reports, never fails on time)"
	@echo "make test-e2e-scale  1,000 stale token Secrets on a real 1.19 controller-manager (minutes)"
	@echo "make reliability  the full fault matrix (faults, watch/continue 410s, restarts, SIGKILLs, leaders)"
	@echo "make fuzz      each libFuzzer target of tests/fuzz for FUZZ_TIME s (default 60; FUZZ_TARGETS)"
	@echo "make lint      clang-format check + cppcheck"
	@echo "make deps      install missing Debian packages (apt-get)"
	@echo "make image     container image kubemend:$(VERSION) and :latest (podman, tests/image/build.sh)"

all: $(BIN) $(TOOL_BIN)

# `make build` names the build directory; without this rule it would be "up to date" and build nothing.
build: all

# ---- dependencies --------------------------------------------------------------------------
deps:
	@./tests/deps.sh

# ---- build -----------------------------------------------------------------------------------
$(BUILD)/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DKM_VERSION='"$(VERSION)"' -c $< -o $@

# Rebuilt from scratch: a renamed or removed module must not linger in the archive.
$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(AR) rcs $@ $^

# The binary links every module, not the archive: reconcilers/ register their runnables with the
# Manager (operator/cmd/manager.h) from constructors that nothing else references.
$(BIN): $(BUILD)/$(MAIN_SRC:.c=.o) $(LIB_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(ALL_LIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(SUPPORT_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(CMOCKA_LIBS) $(ALL_LIBS)

$(BUILD)/tools/%: $(BUILD)/tests/tools/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(ALL_LIBS)

# A fuzz target replayed without libFuzzer (tests/fuzz/replay.c): any compiler, run by test-unit.
$(BUILD)/fuzz-replay/%: $(BUILD)/tests/fuzz/%.o $(BUILD)/tests/fuzz/replay.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(ALL_LIBS)

# A libFuzzer binary: only in the fuzz build (CC=clang, FUZZ_CFLAGS; `make fuzz-build`).
$(BUILD)/fuzz/%: $(BUILD)/tests/fuzz/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(ALL_LIBS)

-include $(FUZZ_SRC:%.c=$(BUILD)/%.d) $(BUILD)/tests/fuzz/replay.d
-include $(LIB_OBJ:.o=.d) $(SUPPORT_OBJ:.o=.d) $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%.d)

# ---- tests -----------------------------------------------------------------------------------
test: test-unit test-fuzz test-integration test-apisim test-reliability test-e2e test-image

# The units, then every fuzz target on its checked-in corpus and regression inputs.
test-unit: $(UNIT_BIN) $(FUZZ_REPLAY)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done
	@set -e; for t in $(FUZZ_NAMES); do \
	  $(BUILD)/fuzz-replay/$$t tests/fuzz/corpus/$$t tests/fuzz/regress/$$t; done

# ---- fuzzing (tests/fuzz/README.md) ----------------------------------------------------------
fuzz-build: | deps
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=clang CFLAGS="$(FUZZ_CFLAGS)" \
	  LDFLAGS="-fsanitize=address,undefined" $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz/%)

# Each target for FUZZ_TIME seconds, growing $(FUZZ_BUILD)/corpus/<target>; findings are written
# to $(FUZZ_BUILD)/crashes/ (keep them as tests/fuzz/regress/<target>/ inputs once fixed).
fuzz: fuzz-build
	@tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_TIME) corpus $(FUZZ_TARGETS)

# CI's short run: each target FUZZ_SMOKE_TIME seconds from the checked-in corpus.
test-fuzz: fuzz-build
	@tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SMOKE_TIME) smoke $(FUZZ_TARGETS)

# The integration tests mostly wait (on apisim, on rollouts): PYTEST_JOBS of them run at once
# (pytest-xdist; each test starts its own servers on free 127.0.0.1 ports).
PYTEST_JOBS ?= 3
test-integration: $(BIN) $(TOOL_BIN) | deps
	@if ls tests/integration/test_*.py >/dev/null 2>&1; then \
	  KUBEMEND_BIN=$(abspath $(BIN)) KUBEMEND_TOOLS=$(abspath $(BUILD)/tools) KUBECTL=$(KUBECTL) \
	  $(PYTHON) -m pytest -n $(PYTEST_JOBS) $(PYTEST_ARGS) tests/integration; fi

test-apisim: | deps
	@if ls tests/apisim/tests/test_*.py >/dev/null 2>&1; then \
	  KUBECTL=$(KUBECTL) $(PYTHON) -m pytest $(PYTEST_ARGS) tests/apisim/tests; fi

# The real-server suites: etcd + kube-apiserver + kube-controller-manager on 127.0.0.1 for each version
# found in $KUBEMEND_K8S_ASSETS (default ../shared/k8s; tests/realk8s/README.md); skipped with one line
# naming the variable where there are none.
test-e2e: $(BIN) $(TOOL_BIN) | deps
	@KUBEMEND_BIN=$(abspath $(BIN)) KUBEMEND_TOOLS=$(abspath $(BUILD)/tools) KUBECTL=$(KUBECTL) \
	  $(PYTHON) -m pytest $(PYTEST_ARGS) -rs tests/e2e

# The real-server scale case (issue 12): 1,000 stale token Secrets on a real 1.19 controller-manager; minutes,
# hence its own target (KUBEMEND_E2E_SCALE_TOKENS changes the count, KUBEMEND_K8S_VERSIONS the version).
test-e2e-scale: $(BIN) $(TOOL_BIN) | deps
	@KUBEMEND_E2E_SCALE=1 KUBEMEND_K8S_VERSIONS=$${KUBEMEND_K8S_VERSIONS:-v1.19} \
	  KUBEMEND_BIN=$(abspath $(BIN)) KUBEMEND_TOOLS=$(abspath $(BUILD)/tools) KUBECTL=$(KUBECTL) \
	  $(PYTHON) -m pytest $(PYTEST_ARGS) -s -rs tests/e2e/test_scale.py

# The fault matrix (tests/reliability): `make test` runs its small subset, `make reliability` all of it and
# prints the table (also in reliability-out/results.md).
RELIABILITY_ENV = KUBEMEND_BIN=$(abspath $(BIN)) KUBEMEND_TOOLS=$(abspath $(BUILD)/tools) KUBECTL=$(KUBECTL)
# Its own --basetemp: the kubemend logs of every run stay there, out of reach of other pytest sessions' cleanup.
test-reliability: $(BIN) | deps
	@mkdir -p reliability-out && $(RELIABILITY_ENV) $(PYTHON) -m pytest $(PYTEST_ARGS) -rs --basetemp=reliability-out/tmp-subset \
	  tests/reliability

reliability: $(BIN) $(TOOL_BIN) | deps
	@mkdir -p reliability-out && KM_RELIABILITY=full $(RELIABILITY_ENV) $(PYTHON) -m pytest $(PYTEST_ARGS) -rsx --basetemp=reliability-out/tmp \
	  tests/reliability

# The zero-downtime bridge (issue 15) on the real servers: the old key from the snapshot and recovered from the
# stale tokens alone (a minute or more of GMP per RSA-2048 key), each followed by the bridged recovery; ~6-10 min
# per version on 2 cores, so not in `make test` (there the suites skip with one line).
test-bridge: $(BIN) $(TOOL_BIN) | deps
	@KUBEMEND_BRIDGE_E2E=1 KUBEMEND_BIN=$(abspath $(BIN)) KUBEMEND_TOOLS=$(abspath $(BUILD)/tools) \
	  KUBECTL=$(KUBECTL) $(PYTHON) -m pytest $(PYTEST_ARGS) -rs -s tests/e2e/test_bridge_snapshot.py \
	  tests/e2e/test_bridge_recover.py

# The image built and run: podman, runc and mmdebstrap installed when missing; skipped, with one
# line saying why, where podman cannot run containers.
test-image: | deps
	@KM_IMAGE_DEPS=1 ./tests/deps.sh
	@KUBEMEND_VERSION=$(VERSION) KUBECTL=$(KUBECTL) $(PYTHON) -m pytest $(PYTEST_ARGS) -rs tests/image

# The sanitizer build runs the same C-facing tests (units and integration) in build-asan/.
# KM_TEST_QUICK: the e = 65537 RSA key recoveries (a minute of GMP each, not instrumented) run in
# `make test` only; the same code paths run under the sanitizers with e = 3 keys.
asan: | deps
	@KM_TEST_QUICK=1 KM_SANITIZED=1 $(MAKE) --no-print-directory BUILD=build-asan CFLAGS="$(ASAN_FLAGS)" \
	  LDFLAGS="-fsanitize=address,undefined" test-unit test-integration

lint: | deps
	clang-format --dry-run --Werror $(C_FILES)
	cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,performance,portability \
	  --inline-suppr --suppress=missingIncludeSystem -I. $(SRC_DIRS)

format:
	clang-format -i $(C_FILES)

# ---- the README's first command and the benchmark -----------------------------------------
demo: $(BIN) | deps
	@./tests/demo.sh $(abspath $(BIN))

bench: $(BIN) | deps
	@./tests/bench/run.sh $(abspath $(BIN))

# The same comparison on a real control plane (tests/bench/realbench.py); BENCH_ARGS e.g. '--tokens 1000'.
bench-real: $(BIN) $(TOOL_BIN) | deps
	@KM_EXTRA_PKGS="gnuplot-nox time" ./tests/deps.sh
	@KUBECTL=$(KUBECTL) $(PYTHON) tests/bench/realbench.py --bin $(abspath $(BIN)) \
	  --tools $(abspath $(BUILD)/tools) $(BENCH_ARGS)

# ---- container image -------------------------------------------------------------------------
image:
	@KM_IMAGE_DEPS=1 ./tests/deps.sh
	@./tests/image/build.sh $(VERSION)

# ---- install / clean -------------------------------------------------------------------------
install: $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/kubemend
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/kubemend
	cp -r crds deploy $(DESTDIR)$(PREFIX)/share/kubemend/

clean:
	rm -rf build build-asan $(FUZZ_BUILD) demo-out bench-out reliability-out
