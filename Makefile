# ganeti-cmk: `make status` (quick look at this machine), `make test` (the suite).
# Everything installs what it needs; run as root on a fresh Debian 12 for the apt steps.

PYTHON ?= python3
PY_TAG := $(shell $(PYTHON) -c 'import sys; print("py%d%d" % sys.version_info[:2])' 2>/dev/null)
VENV ?= .venv/$(PY_TAG)
VPY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help status test test-all-pythons clean

help:
	@echo "make status            quick status of every check on this machine"
	@echo "make test              the test suite (PYTHON=/path/to/python for another interpreter)"
	@echo "make test-all-pythons  the suite under Python 3.9 and 3.13 too (pyenv)"

status:
	@PYTHONPATH=lib $(PYTHON) -m ganeti_cmk.cli status || true

# A virtualenv with the pinned test dependencies; Debian needs python3-venv for it.
$(VPY): requirements-test.txt
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || sh tools/install-debian-packages python3-venv
	$(PYTHON) -m venv --clear $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	@touch $(VPY)

test: $(VPY)
	$(VPY) -m pytest -m "not integration" $(PYTEST_ARGS)

PYENV_ROOT ?= $(HOME)/.pyenv
test-all-pythons:
	@for v in 3.9 3.13; do \
	  py=$$(ls -d $(PYENV_ROOT)/versions/$$v.*/bin/python 2>/dev/null | tail -n 1); \
	  if [ -z "$$py" ]; then echo "no Python $$v under $(PYENV_ROOT)"; exit 1; fi; \
	  $(MAKE) --no-print-directory test PYTHON=$$py || exit 1; \
	done

clean:
	rm -rf .venv build dist .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
