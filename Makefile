# Two commands do all the set-up on a fresh machine:
#   make demo   create .venv, install the pinned dependencies, run the main job on the bundled data
#   make test   create .venv, install, run the test suite (what .ci/run calls)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# constraints.txt pins torch to the registry's CUDA build so pip never takes a CPU-only wheel
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/rethink-audio demo

test: $(STAMP)
	# two workers, one test file each at a time (module fixtures stay whole; tests/conftest.py orders files)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

bench: $(STAMP)
	$(BIN)/python benchmarks/preprocess.py

clean:
	rm -rf $(VENV) runs .pytest_cache
