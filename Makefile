# The two commands a user needs: `make demo` and `make test`. Both build the virtual environment from the
# pinned requirements when it is missing or stale, so a fresh machine needs nothing installed by hand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dvtr-installed
DEMO_DIR ?= demo-data
PYTEST_ARGS ?=
# Label Studio runs in its own environment: its pins conflict with ours.
LS_VENV ?= .venv-labelstudio
LS_STAMP := $(LS_VENV)/.dvtr-lock-sha256
export DVTR_LABELSTUDIO_VENV := $(abspath $(LS_VENV))

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: venv labelstudio browser system demo test test-fast lint clean

venv: $(STAMP)

labelstudio: $(LS_STAMP)

$(LS_STAMP): annotation/requirements-labelstudio.lock annotation/install_labelstudio.sh
	PYTHON=$(PYTHON) bash annotation/install_labelstudio.sh $(LS_VENV)
	@touch $@

# Debian's Chromium for the annotator browser test (apt, needs root; skipped tests say why without it).
browser:
	bash annotation/install_browser.sh

# What the tests need from Debian besides Chromium: GSHHG coastlines and borders for the card's map (idempotent).
system: browser
	bash dvtr_data/card/install_map_data.sh

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

demo: $(STAMP) $(LS_STAMP)
	$(VENV)/bin/dvtr-data demo --out $(DEMO_DIR)

test: $(STAMP) $(LS_STAMP) system
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff (rule set in pyproject.toml) on everything, mypy on the library; both must report nothing.
lint: $(STAMP)
	$(VENV)/bin/ruff check dvtr_data annotation baselines schemas tests benchmarks
	$(VENV)/bin/mypy

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not labelstudio and not browser" $(PYTEST_ARGS)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache build *.egg-info test-artifacts
