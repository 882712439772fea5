# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

.PHONY: demo test install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/coolshift demo

# tests/test_slurm.py runs a real Slurm on 127.0.0.1: as root (CI), install Debian's packages
# when slurmctld is missing (about 11 s); otherwise those tests skip and say why.
SLURM_PKGS := slurmctld slurmd slurm-client munge
# tests/test_console_browser.py drives the web console in Debian's headless chromium (Selenium).
BROWSER_PKGS := chromium chromium-driver

test: $(STAMP)
	@if command -v slurmctld >/dev/null 2>&1 || [ -x /usr/sbin/slurmctld ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make test: installing $(SLURM_PKGS) for tests/test_slurm.py (apt-get, log in /tmp/coolshift-slurm-apt.log)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  { apt-get install -y -q --no-install-recommends $(SLURM_PKGS) \
	    || { apt-get update -q && apt-get install -y -q --no-install-recommends $(SLURM_PKGS); }; \
	  } >/tmp/coolshift-slurm-apt.log 2>&1 \
	  || { tail -5 /tmp/coolshift-slurm-apt.log; echo "make test: could not install Slurm: tests/test_slurm.py's cluster tests will skip"; }; \
	else \
	  echo "make test: slurmctld is not installed and this is not root: tests/test_slurm.py's cluster tests will skip" \
	       "(as root, make test installs $(SLURM_PKGS))"; \
	fi
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make test: installing $(BROWSER_PKGS) for tests/test_console_browser.py (apt-get, log in /tmp/coolshift-browser-apt.log)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  { apt-get install -y -q --no-install-recommends $(BROWSER_PKGS) \
	    || { apt-get update -q && apt-get install -y -q --no-install-recommends $(BROWSER_PKGS); }; \
	  } >/tmp/coolshift-browser-apt.log 2>&1 \
	  || { tail -5 /tmp/coolshift-browser-apt.log; echo "make test: could not install chromium: tests/test_console_browser.py will fail (as root it does not skip)"; }; \
	else \
	  echo "make test: chromium/chromedriver are not installed and this is not root: tests/test_console_browser.py will skip" \
	       "(as root, make test installs $(BROWSER_PKGS))"; \
	fi
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
