# zarrsample developer entry points. `make demo` and `make test` do all set-up.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REF_VENV := .venv-ref
REF_STAMP := $(REF_VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: demo test lint bench bench-compare venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/zarrsample demo

# Two worker processes (pytest-xdist), one test file each at a time. Tests that fork
# DataLoader workers run in a session of their own, where nothing has started jax
# (see tests/conftest.py).
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile -m forking
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not forking"

# Type-check the core with the [tool.mypy] settings of pyproject.toml.
lint: $(STAMP)
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) benchmarks/plan.py
	$(PY) benchmarks/poisson.py
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/read_path.py
	$(PY) benchmarks/adapters.py
	$(PY) benchmarks/stitch.py
	$(PY) benchmarks/scale.py
	$(PY) benchmarks/faults.py
	$(PY) benchmarks/wsi.py
	$(PY) benchmarks/remote.py
	$(PY) benchmarks/preview.py
	$(PY) benchmarks/random_crops.py

$(REF_STAMP): benchmarks/reference-constraints.txt
	test -x $(REF_VENV)/bin/python || $(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(REF_VENV)/bin/python -m pip install --quiet -c benchmarks/reference-constraints.txt zarrdataset psutil
	touch $(REF_STAMP)

# Same workloads through both libraries, side by side; FULL=1 adds 32768^2 and
# 65536^2 (minutes; the reference hits MemoryError at 65536^2).
bench-compare: $(STAMP) $(REF_STAMP)
	$(PY) benchmarks/compare.py --reference-python $(REF_VENV)/bin/python $(if $(FULL),--full)

clean:
	rm -rf $(VENV) $(REF_VENV) *.egg-info .pytest_cache .hypothesis
