# ganeti-cmk: `make status` (quick look at this machine), `make test` (the suite).
# Everything installs what it needs; run as root on a fresh Debian 12 for the apt steps.

PYTHON ?= python3
PY_TAG := $(shell $(PYTHON) -c 'import sys; print("py%d%d" % sys.version_info[:2])' 2>/dev/null)
VENV ?= .venv/$(PY_TAG)
VPY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help status test test-all-pythons integration build mkp deb install uninstall bench clean

help:
	@echo "make status            quick status of every check on this machine"
	@echo "make test              the test suite (PYTHON=/path/to/python for another interpreter)"
	@echo "make test-all-pythons  the suite under Python 3.9 and 3.13 too (pyenv)"
	@echo "make integration       against a real Ganeti 3.0 cluster + KVM instance (root, Debian 12, /dev/kvm)"
	@echo "make build             the checks for the agent in build/agent/ (local/ganeti_*, ganeti_cmk/)"
	@echo "make mkp               the Checkmk package dist/ganeti_cmk-<version>.mkp"
	@echo "make deb               the Debian package dist/ganeti-cmk_<version>_all.deb (root: installs debhelper)"
	@echo "make install           the built checks into \$$(DESTDIR)\$$(LIBDIR) (local/, ganeti_cmk/), the example config into \$$(DESTDIR)\$$(CONFDIR)"
	@echo "make uninstall         remove exactly what install added"
	@echo "make bench             measure every check, write docs/benchmarks.md (root: installs gcc, needrestart's libraries)"

status:
	@PYTHONPATH=lib $(PYTHON) -m ganeti_cmk.cli status || true

# A virtualenv with the pinned test dependencies; Debian needs python3-venv for it.
$(VPY): requirements-test.txt
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || sh tools/install-debian-packages python3-venv
	$(PYTHON) -m venv --clear $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	@touch $(VPY)

test: $(VPY)
	@sh tools/install-debian-packages gcc qemu-system-x86 debhelper lintian ganeti-htools-3.0 || echo "without them the tests that need a C compiler, qemu, htools or Debian's packaging tools skip"
	$(VPY) -m pytest -m "not integration" --ignore=tests/integration $(PYTEST_ARGS)

PYENV_ROOT ?= $(HOME)/.pyenv
test-all-pythons:
	@for v in 3.9 3.13; do \
	  py=$$(ls -d $(PYENV_ROOT)/versions/$$v.*/bin/python 2>/dev/null | tail -n 1); \
	  if [ -z "$$py" ]; then echo "no Python $$v under $(PYENV_ROOT)"; exit 1; fi; \
	  $(MAKE) --no-print-directory test PYTHON=$$py || exit 1; \
	done

# A real single-node Ganeti cluster with a KVM instance in private namespaces, the
# tests marked "integration", teardown (tests/integration/run.sh; README "Integration tests").
integration: $(VPY)
	bash tests/integration/run.sh $(VPY) $(PYTEST_ARGS)

# Packaging (tools/build.py, stdlib only). The built checks carry bytecode
# for $(PYTHON)'s version: build with the nodes' python3 for the fastest start.
# BUILDDIR mirrors the agent's library directory: local/ganeti_* (the entry
# scripts) and ganeti_cmk/ (the library they import from ../ganeti_cmk).
BUILDDIR ?= build/agent
DISTDIR ?= dist
DESTDIR ?=
LIBDIR ?= /usr/lib/check_mk_agent
LOCALDIR := $(LIBDIR)/local
CONFDIR ?= /etc/check_mk
# The registered checks (lib/ganeti_cmk/checks/__init__.py), as built: ganeti_<name>.
CHECKS := $(shell PYTHONPATH=lib $(PYTHON) -c 'from ganeti_cmk.checks import NAMES; print(" ".join("ganeti_" + n for n in NAMES))')

build:
	$(PYTHON) tools/build.py agent $(BUILDDIR)

mkp:
	$(PYTHON) tools/build.py mkp $(DISTDIR)

# debian/ with debhelper, built from a copy of the tree in a temporary
# directory (tools/deb.py); DEB_VERSION_SUFFIX=+x appends to the version.
deb:
	@sh tools/install-debian-packages debhelper dpkg-dev
	$(PYTHON) tools/deb.py $(DISTDIR)

# The library first, replaced as a whole by a rename (no module of an older
# version left behind), then each check renamed into place, so the agent
# never runs half a file (it skips dot files). The operator's ganeti_cmk.cfg
# is never touched.
install: build
	install -d $(DESTDIR)$(LOCALDIR) $(DESTDIR)$(CONFDIR)
	rm -rf $(DESTDIR)$(LIBDIR)/.ganeti_cmk.new $(DESTDIR)$(LIBDIR)/.ganeti_cmk.old
	cp -R $(BUILDDIR)/ganeti_cmk $(DESTDIR)$(LIBDIR)/.ganeti_cmk.new
	chmod -R u=rwX,go=rX $(DESTDIR)$(LIBDIR)/.ganeti_cmk.new
	if [ -d $(DESTDIR)$(LIBDIR)/ganeti_cmk ]; then mv $(DESTDIR)$(LIBDIR)/ganeti_cmk $(DESTDIR)$(LIBDIR)/.ganeti_cmk.old; fi
	mv $(DESTDIR)$(LIBDIR)/.ganeti_cmk.new $(DESTDIR)$(LIBDIR)/ganeti_cmk
	rm -rf $(DESTDIR)$(LIBDIR)/.ganeti_cmk.old
	@for c in $(CHECKS); do \
	  echo "install $(DESTDIR)$(LOCALDIR)/$$c"; \
	  install -m 0755 $(BUILDDIR)/local/$$c $(DESTDIR)$(LOCALDIR)/.$$c.new && \
	  mv -f $(DESTDIR)$(LOCALDIR)/.$$c.new $(DESTDIR)$(LOCALDIR)/$$c || exit 1; \
	done
	install -m 0644 mkp/ganeti_cmk.cfg.example $(DESTDIR)$(CONFDIR)/ganeti_cmk.cfg.example

uninstall:
	rm -f $(addprefix $(DESTDIR)$(LOCALDIR)/,$(CHECKS)) $(DESTDIR)$(CONFDIR)/ganeti_cmk.cfg.example
	rm -rf $(DESTDIR)$(LIBDIR)/ganeti_cmk

# The benchmark (bench/run.py): the checks built for the nodes' python3, on
# loads of real processes, against python3 -c pass and needrestart -p.
# needrestart itself is never installed (its apt hook would stay behind): the
# bench unpacks its package into a temp dir; these are the libraries it needs.
BENCH_PYTHON ?= /usr/bin/python3
NEEDRESTART_LIBS := perl gettext-base libintl-perl libproc-processtable-perl \
  libsort-naturally-perl libterm-readkey-perl libmodule-find-perl binutils xz-utils
bench: $(VPY)
	@sh tools/install-debian-packages gcc $(NEEDRESTART_LIBS)
	$(MAKE) --no-print-directory build PYTHON=$(BENCH_PYTHON)
	$(VPY) bench/run.py --python $(BENCH_PYTHON) --checks $(BUILDDIR)/local

clean:
	rm -rf .venv build dist .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
