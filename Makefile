# ingress.haproxy — developer entry points.
#   make demo   set up, start the loopback lab, run the main job, stop the lab
#   make test   set up, then every quality gate: sanity, units, integration,
#               ansible-lint, build + install of the collection tarball
#   make bench  set up, then the benchmarks (writes docs/benchmarks.md)
#   make test-matrix  the HAProxy-facing integration targets on every HAProxy
#               version, README's "Tested with" table from the results

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV        := $(CURDIR)/.venv
PY          := $(VENV)/bin/python
BIN         := $(VENV)/bin
# Outside the checkout: inside a git work tree ansible-test would list the
# mirror's files through the outer repo's git and find none.
# Override per parallel run: make WORK=/tmp/w1 integration
WORK        ?= /tmp/ingress-haproxy-$(shell printf %s '$(CURDIR)' | md5sum | cut -c1-8)
# ansible-test needs the collection at .../ansible_collections/ingress/haproxy.
COLL_ROOT   := $(WORK)/collections
COLL        := $(COLL_ROOT)/ansible_collections/ingress/haproxy
DIST        := $(WORK)/dist
INSTALLED   := $(WORK)/installed
# Where unit tests start their labs: tests/unit/plugins/module_utils/conftest.py
# derives the same name from the collection's path.
UNIT_LAB_ROOT := /tmp/ingress-lab-$(shell printf %s '$(COLL)' | sha256sum | cut -c1-8)
export ANSIBLE_COLLECTIONS_PATH := $(COLL_ROOT)
export PATH := $(BIN):$(PATH)

# ansible-rulebook needs Java 17 (Debian's openjdk-17-jre-headless).
JAVA_HOME   ?= $(shell readlink -f /usr/bin/java 2>/dev/null | sed 's:/bin/java$$::')

INTEGRATION_TARGETS ?=
UNITS ?=

# Which HAProxy the labs run: 2.6 (the host's, default), 3.0, 3.2, 3.4 (Debian's,
# from a root cached under $$INGRESS_HAPROXY_ROOTS, see tests/lab/README.md).
HAPROXY_VERSION ?= 2.6
export INGRESS_HAPROXY_VERSION := $(HAPROXY_VERSION)
# The targets that talk to HAProxy the most; `make test` runs them again on 3.2,
# `make test-matrix` on every version.
VERSION_TARGETS := haproxy_ssl_cert haproxy_ssl_cert_info haproxy_ssl_cert_endpoints served_cert_info \
	haproxy_ssl_ca_file haproxy_ssl_crl_file
MATRIX_VERSIONS := 2.6 3.0 3.2 3.4

.PHONY: help setup collection sanity units lab-selftest integration integration-3.2 lint build test test-matrix demo bench soak clean examples test-floor docs-lint tarball-check

help:
	@echo "make demo    run the main job on the loopback lab"
	@echo "make test    run the whole test suite"
	@echo "make bench   run the benchmarks on HAProxy 2.6 and 3.4 (BENCH_HAPROXY), write docs/benchmarks.md"
	@echo "make test-matrix  HAProxy-facing targets on 2.6, 3.0, 3.2, 3.4; README table"
	@echo "HAPROXY_VERSION=3.2 runs the labs of any target on that version"

setup:
	@bash tests/utils/bootstrap.sh

# Mirror the working tree (all but git-ignored files) into the
# ansible_collections layout ansible-test requires.
collection: setup
	@mkdir -p $(COLL)
	@rsync -a --delete --exclude=/.git --filter=':- .gitignore' ./ $(COLL)/
	@mkdir -p $(COLL)/tests/integration
	@printf '%s\n' '---' \
		'ingress_lab_python: $(PY)' \
		'ingress_lab_dir: $(COLL)/tests/lab' \
		'ingress_lab_root: $(WORK)/lab' \
		'ingress_eda_rulebook: $(CURDIR)/.venv-eda/bin/ansible-rulebook' \
		'ingress_java_home: $(JAVA_HOME)' \
		"ingress_lab_haproxy: '$(HAPROXY_VERSION)'" \
		> $(COLL)/tests/integration/integration_config.yml
	@printf '{"haproxy": "%s"}\n' '$(HAPROXY_VERSION)' > $(COLL)/tests/unit/lab_config.json

sanity: collection
	cd $(COLL) && ansible-test sanity --venv --python 3.12 --color no

# Some unit tests talk to a real HAProxy: each starts its own lab under
# $(UNIT_LAB_ROOT) (ansible-test passes no environment through); the reaper
# stops whatever a crashed test left there, and only there.
units: collection
	cd $(COLL) && { rc=0; ansible-test units --local --python 3.12 --color no $(UNITS) || rc=$$?; \
		$(PY) tests/lab/lab.py stop-all --root $(UNIT_LAB_ROOT) >/dev/null || true; exit $$rc; }

# The lab's own tests: it starts every daemon and stops exactly what it started.
lab-selftest: collection
	mkdir -p $(WORK)/lab
	cd $(COLL) && $(PY) -m pytest -p no:cacheprovider tests/lab --lab-root $(WORK)/lab

# Each target starts and stops its own lab; the reaper afterwards stops any lab
# a crashed target left behind (only PIDs recorded under $(WORK)/lab).
integration: collection
	mkdir -p $(WORK)/lab
	cd $(COLL) && { rc=0; ansible-test integration --local --python 3.12 --color no $(INTEGRATION_TARGETS) || rc=$$?; \
		$(PY) tests/lab/lab.py stop-all --root $(WORK)/lab || true; exit $$rc; }

# Not part of `make test`: the concurrent-writers target for SOAK_ROUNDS rounds.
SOAK_ROUNDS ?= 1000
soak: collection
	printf 'haproxy_ssl_cert_concurrent_rounds: %s\n' '$(SOAK_ROUNDS)' >> $(COLL)/tests/integration/integration_config.yml
	mkdir -p $(WORK)/lab
	cd $(COLL) && { rc=0; ansible-test integration --local --python 3.12 --color no -v haproxy_ssl_cert_concurrent \
		|| rc=$$?; $(PY) tests/lab/lab.py stop-all --root $(WORK)/lab || true; exit $$rc; }

lint: collection
	cd $(COLL) && ansible-lint --profile production

build: collection
	rm -rf $(DIST) $(INSTALLED) && mkdir -p $(DIST)
	cd $(COLL) && ansible-galaxy collection build --output-path $(DIST) --force
	ANSIBLE_COLLECTIONS_PATH=$(INSTALLED) ansible-galaxy collection install --offline --no-deps --force \
		-p $(INSTALLED) $(DIST)/ingress-haproxy-*.tar.gz
	ANSIBLE_COLLECTIONS_PATH=$(INSTALLED) tests/utils/check_installed.sh

# The deploy examples without a container engine: schemas, HAProxy configs,
# wiring (their commands run against the lab in the target examples_deploy).
examples: setup
	$(PY) -m pytest -p no:cacheprovider tests/examples

# The HAProxy-facing targets again on Debian's 3.2 (a work dir of its own), with
# the concurrent writers, whose conflicts differ there (3.x refuses the set).
integration-3.2:
	$(MAKE) --no-print-directory WORK=$(WORK)/haproxy-3.2 HAPROXY_VERSION=3.2 \
		INTEGRATION_TARGETS='$(VERSION_TARGETS) haproxy_ssl_cert_concurrent' integration

test: sanity docs-lint units lab-selftest integration integration-3.2 lint build tarball-check examples
	@echo "make test: 10 passed, 0 failed (sanity, docs-lint, units, lab-selftest, integration, integration-3.2, lint, build, tarball-check, examples)"

# Every version, even after one fails; the results (and each pass's time) go to
# $(WORK)/matrix/results.json and README's "Tested with" table.
test-matrix: collection
	rm -rf $(WORK)/matrix && mkdir -p $(WORK)/matrix
	rc=0; for version in $(MATRIX_VERSIONS); do \
		started=$$(date +%s); status=passed; \
		$(MAKE) --no-print-directory WORK=$(WORK)/haproxy-$$version HAPROXY_VERSION=$$version \
			INTEGRATION_TARGETS='$(VERSION_TARGETS)' integration \
			> $(WORK)/matrix/$$version.log 2>&1 || { status=failed; rc=1; }; \
		$(PY) tests/utils/tested_with.py record --results $(WORK)/matrix/results.json \
			--version $$version --status $$status --seconds $$(( $$(date +%s) - started )) \
			--log $(WORK)/matrix/$$version.log; \
	done; \
	$(PY) tests/utils/tested_with.py readme --results $(WORK)/matrix/results.json \
		--targets '$(VERSION_TARGETS)' --readme README.md; \
	exit $$rc

# Every plugin, module and role entry point documented and its docs valid, as docsite builders render them.
docs-lint: collection
	cd $(COLL) && antsibull-docs lint-collection-docs --plugin-docs .

# The built tarball holds no generated file and no path of this machine
# (tests/integration/integration_config.yml names the venv and the work dir).
tarball-check: build
	$(PY) tests/utils/check_tarball.py $(DIST)/ingress-haproxy-*.tar.gz $(CURDIR) $(WORK)


# The declared floors (meta/runtime.yml, galaxy.yml), installed exactly in a
# venv and collections directory of their own, run the role's pipeline target.
test-floor: collection
	mkdir -p $(WORK)/lab
	cd $(COLL) && { rc=0; bash tests/utils/floor.sh $(WORK)/floor $(COLL_ROOT) $(PY) role_certificates_pipeline || rc=$$?; \
		$(PY) tests/lab/lab.py stop-all --root $(WORK)/lab || true; exit $$rc; }

demo: collection
	mkdir -p $(WORK)/lab
	cd $(COLL) && $(PY) tests/demo/demo.py --lab-root $(WORK)/lab

# Benchmarks are measurements, never timed tests: they print ratios against a
# baseline run in the same process and write docs/benchmarks.md, with the
# HAProxy versions of BENCH_HAPROXY side by side.
BENCH_HAPROXY ?= 2.6,3.4
bench: collection
	mkdir -p $(WORK)/lab
	cd $(COLL) && $(PY) tests/benchmarks/run.py --lab-root $(WORK)/lab --out docs/benchmarks.md \
		--haproxy $(BENCH_HAPROXY) $(BENCH_ARGS)
	cp $(COLL)/docs/benchmarks.md docs/benchmarks.md

clean:
	rm -rf $(WORK)
